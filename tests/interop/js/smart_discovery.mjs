// SMART discovery as fhir-kit-client does it: smartAuthMetadata() races [base]/.well-known/smart-configuration,
// the CapabilityStatement's oauth-uris and OpenID configuration, and must come back with the token URL.
import { client, main } from './lib.mjs';

main(async () => {
  const anonymous = client(null);
  const metadata = await anonymous.smartAuthMetadata();
  const statement = await anonymous.capabilityStatement();
  return {
    tokenUrl: metadata.tokenUrl?.toString() ?? null,
    authorizeUrl: metadata.authorizeUrl?.toString() ?? null,
    fhirVersion: statement.fhirVersion,
  };
});
