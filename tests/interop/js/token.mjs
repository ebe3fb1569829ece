// A backend service's token (OAuth 2.0 client credentials) at the discovered token URL, once with the client secret
// (HTTP Basic, client_secret_basic) and once with a signed assertion (private_key_jwt); each token then reads with
// fhir-kit-client.
import { client, clientAssertion, input, main } from './lib.mjs';

async function token(tokenUrl, form, headers = {}) {
  const response = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.read', ...form }),
  });
  const body = await response.json();
  return { status: response.status, body };
}

async function readWith(answer) {
  if (!answer.body.access_token) return null;
  const organization = await client(answer.body.access_token).read({ resourceType: 'Organization', id: 'hosp-b' });
  return organization.id;
}

main(async () => {
  const { tokenUrl } = await client(null).smartAuthMetadata();
  const basic = Buffer.from(`${input.secretClient}:${input.secret}`).toString('base64');
  const secret = await token(tokenUrl, {}, { authorization: `Basic ${basic}` });
  const assertion = clientAssertion({
    clientId: input.keyClient, kid: input.kid, audience: tokenUrl.toString(), privateKeyPem: input.privateKeyPem,
  });
  const signed = await token(tokenUrl, {
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
  });
  const wrong = await token(tokenUrl, {}, { authorization: `Basic ${Buffer.from(`${input.secretClient}:nope`).toString('base64')}` });
  return {
    tokenUrl: tokenUrl.toString(),
    secret: { status: secret.status, scope: secret.body.scope, expiresIn: secret.body.expires_in, read: await readWith(secret) },
    privateKeyJwt: { status: signed.status, scope: signed.body.scope, expiresIn: signed.body.expires_in, read: await readWith(signed) },
    wrongSecret: { status: wrong.status, error: wrong.body.error },
  };
});
