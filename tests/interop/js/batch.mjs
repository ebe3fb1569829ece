// A batch Bundle with fhir-kit-client's batch().
import { client, entries, input, main } from './lib.mjs';

main(async () => {
  const response = await client().batch({ body: input.bundle });
  return { type: response.type, entries: entries(response) };
});
