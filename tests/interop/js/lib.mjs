// What every scenario script shares: its input (one JSON argument), a fhir-kit-client Client on the registry's FHIR
// base, and its output — one JSON object on stdout, {ok: true, ...} or {ok: false, error, status, data}, which the
// pytest test asserts on.
import { createSign, randomUUID } from 'node:crypto';
import { Client } from 'fhir-kit-client';

export const input = JSON.parse(process.argv[2] ?? '{}');

export function client(token = input.token) {
  return new Client({ baseUrl: input.fhir, ...(token ? { bearerToken: token } : {}) });
}

/** Status and headers of the HTTP response a resource came in. */
export function http(resource) {
  const { response } = Client.httpFor(resource);
  const header = (name) => response?.headers.get(name) ?? null;
  return { status: response?.status ?? null, location: header('location'), etag: header('etag') };
}

/** What a failed call tells: fhir-kit-client throws with the response's status and body. */
export function failure(error) {
  return { error: String(error?.message ?? error), status: error?.response?.status ?? null, data: error?.response?.data ?? null };
}

export async function main(scenario) {
  try {
    process.stdout.write(JSON.stringify({ ok: true, ...(await scenario()) }));
  } catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, ...failure(error) }));
    process.exitCode = 1;
  }
}

const base64url = (data) => Buffer.from(data).toString('base64url');

/** A client assertion (RFC 7523 §2.2, SMART Backend Services): ES384 over header.claims with the client's key. */
export function clientAssertion({ clientId, kid, audience, privateKeyPem }) {
  const header = base64url(JSON.stringify({ alg: 'ES384', typ: 'JWT', kid }));
  const claims = base64url(JSON.stringify({
    iss: clientId, sub: clientId, aud: audience, exp: Math.floor(Date.now() / 1000) + 240, jti: randomUUID(),
  }));
  const signer = createSign('SHA384');
  signer.update(`${header}.${claims}`);
  const signature = signer.sign({ key: privateKeyPem, dsaEncoding: 'ieee-p1363' });
  return `${header}.${claims}.${base64url(signature)}`;
}

/** A Bundle's response entries, reduced to what the tests compare. */
export function entries(bundle) {
  return (bundle.entry ?? []).map((e) => ({
    status: e.response?.status ?? null,
    location: e.response?.location ?? null,
    resourceType: e.resource?.resourceType ?? null,
    id: e.resource?.id ?? null,
    bundleType: e.resource?.type ?? null,
    matches: (e.resource?.entry ?? []).map((x) => `${x.resource?.resourceType}/${x.resource?.id}`),
  }));
}
