// A search with _include, paged by _count, following every next link with nextPage().
import { client, input, main } from './lib.mjs';

main(async () => {
  const fhir = client();
  const pages = [];
  let bundle = await fhir.search({ resourceType: 'DiagnosticReport', searchParams: input.searchParams });
  while (bundle) {
    const mode = (m) => (bundle.entry ?? []).filter((e) => e.search?.mode === m).map((e) => `${e.resource.resourceType}/${e.resource.id}`);
    pages.push({ matches: mode('match'), includes: mode('include'), total: bundle.total ?? null });
    bundle = await fhir.nextPage({ bundle });
  }
  return { pages };
});
