// create, read, update and vread of a Patient with fhir-kit-client.
import { client, http, input, main } from './lib.mjs';

main(async () => {
  const fhir = client();
  const created = await fhir.create({ resourceType: 'Patient', body: input.patient });
  const read = await fhir.read({ resourceType: 'Patient', id: created.id });
  const changed = { ...read, name: [{ family: '改', given: ['名'] }] };
  const updated = await fhir.update({ resourceType: 'Patient', id: created.id, body: changed });
  const first = await fhir.vread({ resourceType: 'Patient', id: created.id, version: '1' });
  return {
    created: { ...http(created), id: created.id, versionId: created.meta?.versionId },
    read: { ...http(read), id: read.id, family: read.name?.[0]?.family },
    updated: { ...http(updated), versionId: updated.meta?.versionId, family: updated.name?.[0]?.family },
    vread: { ...http(first), versionId: first.meta?.versionId, family: first.name?.[0]?.family },
  };
});
