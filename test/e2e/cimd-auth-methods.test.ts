/**
 * End to end: the token endpoint auth methods a Client ID Metadata Document
 * offers (SEP-3149), each form served by the test on loopback: neither field,
 * the single `token_endpoint_auth_method`, the list (as
 * `token_endpoint_auth_methods_supported`, SEP-3149's name, and as
 * `token_endpoint_auth_methods`), and both side by side. The client picks
 * from the methods its document shares with the gateway, so the token
 * endpoint accepts each of them (`private_key_jwt` only with keys) and no
 * other; a document with nothing in common is refused, saying so.
 */
import t from 'tap'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { randomUUID } from 'node:crypto'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, obtainCode, pkcePair, postForm, type RegisteredClient } from '../support/flow.ts'
import { startStack } from '../support/stack.ts'

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const stack = await startStack({ config: (file) => ({ ...file, clientMetadataDocuments: { developmentAllowLoopback: true } }) })
const site = await startClientSite()
t.teardown(async () => {
  await site.close()
  await stack.close()
})
const redirectUri = `${site.url}/callback`
const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
const publicJwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } as JWK
site.json('/jwks.json', { keys: [publicJwk] }, { 'cache-control': 'max-age=300' })

function documentClient(path: string, fields: Record<string, unknown>): RegisteredClient {
  const clientId = `${site.url}${path}`
  site.json(path, { client_id: clientId, client_name: 'Methods Client', redirect_uris: [redirectUri], ...fields }, { 'cache-control': 'max-age=300' })
  return { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'unknown', grant_types: [] }
}

async function assertion(client: RegisteredClient) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iss: client.client_id, sub: client.client_id, aud: stack.gatewayUrl, iat: now, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey)
}

function exchange(client: RegisteredClient, grant: { code: string; verifier: string }, signed?: string) {
  return postForm(`${stack.gatewayUrl}/token`, {
    grant_type: 'authorization_code',
    code: grant.code,
    code_verifier: grant.verifier,
    redirect_uri: redirectUri,
    ...(signed === undefined ? { client_id: client.client_id } : { client_assertion_type: JWT_BEARER, client_assertion: signed }),
  })
}

const keysByUri = { jwks_uri: `${site.url}/jwks.json` }
type Method = 'none' | 'private_key_jwt'
const cases: Array<{ name: string; fields: Record<string, unknown>; accepted: Method[] }> = [
  { name: 'neither field', fields: {}, accepted: ['none'] },
  { name: 'token_endpoint_auth_method none', fields: { token_endpoint_auth_method: 'none' }, accepted: ['none'] },
  { name: 'token_endpoint_auth_method private_key_jwt', fields: { token_endpoint_auth_method: 'private_key_jwt', ...keysByUri }, accepted: ['private_key_jwt'] },
  { name: 'the list none and private_key_jwt with keys at jwks_uri (ChatGPT\'s document)', fields: { token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], ...keysByUri }, accepted: ['none', 'private_key_jwt'] },
  { name: 'the list with inline keys', fields: { token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'], jwks: { keys: [publicJwk] } }, accepted: ['none', 'private_key_jwt'] },
  { name: 'the list private_key_jwt alone', fields: { token_endpoint_auth_methods_supported: ['private_key_jwt'], ...keysByUri }, accepted: ['private_key_jwt'] },
  { name: 'the list without keys', fields: { token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'] }, accepted: ['none'] },
  { name: 'the list named token_endpoint_auth_methods', fields: { token_endpoint_auth_methods: ['none'] }, accepted: ['none'] },
  { name: 'the list beside the single field', fields: { token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], token_endpoint_auth_method: 'none', ...keysByUri }, accepted: ['none', 'private_key_jwt'] },
  { name: 'a list with a method the gateway lacks', fields: { token_endpoint_auth_methods_supported: ['tls_client_auth', 'none'] }, accepted: ['none'] },
]

for (const [i, { name, fields, accepted }] of cases.entries()) {
  t.test(`${name}: ${accepted.join(' and ')} accepted`, async (t) => {
    const client = documentClient(`/methods-${i}.json`, fields)
    for (const method of ['none', 'private_key_jwt'] as const) {
      const signed = method === 'private_key_jwt' ? await assertion(client) : undefined
      const answer = await exchange(client, await obtainCode(stack, client, { redirect_uri: redirectUri }), signed)
      if (accepted.includes(method)) {
        t.equal(answer.status, 200, `${method} exchanges the code`)
        t.ok(((await answer.json()) as { access_token?: string }).access_token)
        continue
      }
      t.equal(answer.status, 401, `${method} is refused`)
      const body = (await answer.json()) as { error: string; error_description: string }
      t.equal(body.error, 'invalid_client')
      t.equal(body.error_description, `token_endpoint_auth_method: the client is registered for ${accepted.join(' or ')} but authenticated with ${method} (RFC 6749 section 2.3)`)
    }
  })
}

t.test('both in common: an assertion that does not verify is refused, though none would have been accepted', async (t) => {
  const client = documentClient('/methods-bad-assertion.json', { token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], ...keysByUri })
  const other = await generateKeyPair('ES256')
  const now = Math.floor(Date.now() / 1000)
  const forged = await new SignJWT({ iss: client.client_id, sub: client.client_id, aud: stack.gatewayUrl, iat: now, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(other.privateKey)
  const answer = await exchange(client, await obtainCode(stack, client, { redirect_uri: redirectUri }), forged)
  t.equal(answer.status, 401)
  const body = (await answer.json()) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_client')
  t.match(body.error_description, /signature does not verify/)
})

t.test('nothing in common: refused at /authorize (the page) and at /token (401), naming it', async (t) => {
  const client = documentClient('/methods-none-in-common.json', { token_endpoint_auth_methods_supported: ['client_secret_basic', 'tls_client_auth'] })
  const why = 'offers token_endpoint_auth_methods_supported client_secret_basic, tls_client_auth, none of which this gateway accepts from a metadata document (only none and private_key_jwt)'
  const page = await fetch(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri }), { redirect: 'manual' })
  t.equal(page.status, 400)
  t.equal(page.headers.get('location'), null, 'never a redirect')
  t.match(await page.text(), why)
  const token = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'authorization_code', code: 'x', code_verifier: 'v'.repeat(43), redirect_uri: redirectUri, client_id: client.client_id })
  t.equal(token.status, 401)
  const body = (await token.json()) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_client')
  t.match(body.error_description, why)
})

t.test('a preference outside its own list is refused', async (t) => {
  const client = documentClient('/methods-inconsistent.json', { token_endpoint_auth_methods_supported: ['none'], token_endpoint_auth_method: 'private_key_jwt', ...keysByUri })
  const page = await fetch(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri }), { redirect: 'manual' })
  t.equal(page.status, 400)
  t.match(await page.text(), 'prefers token_endpoint_auth_method private_key_jwt, which is not in its token_endpoint_auth_methods_supported (SEP-3149)')
})
