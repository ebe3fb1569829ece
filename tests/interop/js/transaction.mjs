// A transaction Bundle with fhir-kit-client's transaction().
import { client, entries, input, main } from './lib.mjs';

main(async () => {
  const response = await client().transaction({ body: input.bundle });
  return { type: response.type, entries: entries(response) };
});
