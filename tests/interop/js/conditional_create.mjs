// Conditional create (R4 http.html §3.1.0.8.1): the same Patient posted twice with If-None-Exist on its MRN.
import { client, http, input, main } from './lib.mjs';

main(async () => {
  const fhir = client();
  const options = { headers: { 'If-None-Exist': input.ifNoneExist } };
  const first = await fhir.create({ resourceType: 'Patient', body: input.patient, options });
  const second = await fhir.create({ resourceType: 'Patient', body: input.patient, options });
  return { first: { ...http(first), id: first.id }, second: { ...http(second), id: second.id } };
});
