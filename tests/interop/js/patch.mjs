// PATCH with a JSON Patch document (R4 http.html §3.1.0.5, application/json-patch+json), version-aware with
// If-Match; a stale If-Match is refused with 412.
import { client, failure, http, input, main } from './lib.mjs';

main(async () => {
  const fhir = client();
  const before = await fhir.read({ resourceType: 'Patient', id: input.id });
  const jsonPatch = [{ op: 'replace', path: '/gender', value: 'male' }];
  const patched = await fhir.patch({
    resourceType: 'Patient', id: input.id, jsonPatch, options: { headers: { 'If-Match': http(before).etag } },
  });
  let stale;
  try {
    await fhir.patch({
      resourceType: 'Patient', id: input.id, jsonPatch: [{ op: 'replace', path: '/gender', value: 'other' }],
      options: { headers: { 'If-Match': http(before).etag } },
    });
    stale = { status: 'accepted' };
  } catch (error) {
    stale = failure(error);
  }
  const after = await fhir.read({ resourceType: 'Patient', id: input.id });
  return {
    before: { versionId: before.meta?.versionId, gender: before.gender },
    patched: { ...http(patched), versionId: patched.meta?.versionId, gender: patched.gender },
    stale: { status: stale.status, issue: stale.data?.issue?.[0]?.code ?? null },
    after: { versionId: after.meta?.versionId, gender: after.gender },
  };
});
