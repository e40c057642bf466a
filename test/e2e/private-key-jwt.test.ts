/**
 * End to end: a client metadata document that declares private_key_jwt
 * (RFC 7523 §2.2), with its keys at a jwks_uri or inline. A valid assertion
 * is accepted; a wrong key, an expired one, a replayed jti, a wrong audience,
 * a mismatched issuer, a shared-secret algorithm and a missing assertion are
 * 401 invalid_client, and none of them uses up the code.
 */
import t from 'tap'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { randomUUID } from 'node:crypto'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, postForm, type RegisteredClient } from '../support/flow.ts'
import { startStack } from '../support/stack.ts'

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const stack = await startStack({ config: (file) => ({ ...file, clientMetadataDocuments: { developmentAllowLoopback: true } }) })
const site = await startClientSite()
t.teardown(async () => {
  await site.close()
  await stack.close()
})
const redirectUri = `${site.url}/callback`
const tokenEndpoint = `${stack.gatewayUrl}/token`

async function keyPair(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  return { privateKey, kid, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } as JWK }
}
type Key = Awaited<ReturnType<typeof keyPair>>

const current = await keyPair('key-1')
const attacker = await keyPair('key-1') // same kid, another key
let published: JWK[] = [current.publicJwk]
site.on('/jwks.json', (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' })
  res.end(JSON.stringify({ keys: published }))
})

function documentClient(path: string, keys: Record<string, unknown>): RegisteredClient {
  const clientId = `${site.url}${path}`
  site.json(path, { client_id: clientId, client_name: 'Keyed Client', redirect_uris: [redirectUri], token_endpoint_auth_method: 'private_key_jwt', ...keys }, { 'cache-control': 'max-age=300' })
  return { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'private_key_jwt', grant_types: [] }
}
const byUri = documentClient('/keyed.json', { jwks_uri: `${site.url}/jwks.json` })
const inline = documentClient('/inline.json', { jwks: { keys: [current.publicJwk] } })

interface Claims {
  iss?: string
  sub?: string
  aud?: string | string[]
  exp?: number
  jti?: string
}

/** A client assertion; `claims` override the valid ones. */
async function assertion(client: RegisteredClient, key: Key = current, claims: Claims = {}, alg = 'ES256') {
  const now = Math.floor(Date.now() / 1000)
  const all = { iss: client.client_id, sub: client.client_id, aud: stack.gatewayUrl, iat: now, exp: now + 60, jti: randomUUID(), ...claims }
  return new SignJWT(all).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey)
}

async function codeFor(client: RegisteredClient) {
  const { verifier, challenge } = pkcePair()
  const url = authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri })
  const result = await signInAndFollow(new CookieBrowser(), url.href, stack.upstream.account, (next) => next.href.startsWith(redirectUri))
  const code = result.redirect?.searchParams.get('code')
  if (!code) throw new Error(`no code: ${result.response?.status} ${result.body?.slice(0, 300)}`)
  return { code, verifier }
}

function exchange(client: RegisteredClient, grant: { code: string; verifier: string }, signed: string | undefined, extra: Record<string, string> = {}) {
  return postForm(tokenEndpoint, {
    grant_type: 'authorization_code',
    code: grant.code,
    code_verifier: grant.verifier,
    redirect_uri: redirectUri,
    ...(signed === undefined ? { client_id: client.client_id } : { client_assertion_type: JWT_BEARER, client_assertion: signed }),
    ...extra,
  })
}

async function refusedAs401(t: Pick<typeof import('tap').default, 'equal' | 'match'>, response: Response, reason: RegExp) {
  const body = (await response.json()) as { error: string; error_description: string }
  t.equal(response.status, 401, 'status 401')
  t.equal(body.error, 'invalid_client', 'invalid_client')
  t.match(response.headers.get('www-authenticate'), /^Basic/, 'with a challenge')
  t.match(body.error_description, reason, 'says why')
}

t.test('a valid assertion is accepted, with the keys at jwks_uri or inline, aud the issuer or the token endpoint', async (t) => {
  const first = await codeFor(byUri)
  const response = await exchange(byUri, first, await assertion(byUri))
  t.equal(response.status, 200, 'tokens for an assertion with aud = issuer')
  const tokens = (await response.json()) as { access_token: string; refresh_token: string }
  t.ok(tokens.access_token)

  const refreshed = await postForm(tokenEndpoint, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_assertion_type: JWT_BEARER, client_assertion: await assertion(byUri, current, { aud: tokenEndpoint }) })
  t.equal(refreshed.status, 200, 'a refresh with aud = token endpoint')

  const second = await codeFor(inline)
  t.equal((await exchange(inline, second, await assertion(inline), { client_id: inline.client_id })).status, 200, 'inline jwks, with client_id sent too')

  const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: tokens.access_token, client_assertion_type: JWT_BEARER, client_assertion: await assertion(byUri) })
  t.equal(revoked.status, 200, 'revocation authenticates the same way')
})

t.test('refused assertions: 401 invalid_client, and the code survives each refusal', async (t) => {
  const grant = await codeFor(byUri)
  const now = Math.floor(Date.now() / 1000)
  const cases: Array<[string, () => Promise<string | undefined>, RegExp]> = [
    ['signed with a key the client does not publish', () => assertion(byUri, attacker), /signature does not verify/],
    ['expired', () => assertion(byUri, current, { iat: now - 600, exp: now - 120 } as Claims), /expired/],
    ['for another audience', () => assertion(byUri, current, { aud: 'https://other-server.example' }), /aud must be the gateway/],
    ['for the upstream as audience', () => assertion(byUri, current, { aud: stack.upstream.issuer }), /aud must be the gateway/],
    ['issued by someone else', () => assertion(byUri, current, { iss: 'https://attacker.example/client.json' }), /iss must be the client_id/],
    ['valid for an hour', () => assertion(byUri, current, { exp: now + 3600 }), /expire within 600 seconds/],
    ['without jti', () => assertion(byUri, current, { jti: undefined }), /jti/],
    ['signed with a shared secret (HS256)', () => new SignJWT({ iss: byUri.client_id, sub: byUri.client_id, aud: stack.gatewayUrl, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('a'.repeat(32))), /signed with one of/],
    ['unsigned (alg none)', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: byUri.client_id, sub: byUri.client_id, aud: stack.gatewayUrl, exp: now + 60, jti: 'x' })).toString('base64url')}.`, /not a valid signed JWT|signed with one of/],
    ['no assertion at all', async () => undefined, /registered for private_key_jwt but authenticated with none/],
  ]
  for (const [name, make, reason] of cases) {
    t.test(name, async (t) => refusedAs401(t, await exchange(byUri, grant, await make()), reason))
  }
  t.test('the code still works with a valid assertion', async (t) => {
    t.equal((await exchange(byUri, grant, await assertion(byUri))).status, 200)
  })
})

t.test('a replayed jti is refused', async (t) => {
  const first = await codeFor(byUri)
  const second = await codeFor(byUri)
  const once = await assertion(byUri)
  t.equal((await exchange(byUri, first, once)).status, 200, 'the first use')
  await refusedAs401(t, await exchange(byUri, second, once), /already used \(jti replayed\)/)
  t.equal((await exchange(byUri, second, await assertion(byUri))).status, 200, 'a fresh assertion works')
})

t.test('a rotated key at jwks_uri is fetched again, once, past the cache', async (t) => {
  const rotated = await keyPair('key-2')
  published = [rotated.publicJwk]
  t.teardown(() => void (published = [current.publicJwk]))
  const before = site.hits.filter((hit) => hit === '/jwks.json').length
  const grant = await codeFor(byUri)
  t.equal((await exchange(byUri, grant, await assertion(byUri, rotated))).status, 200, 'the new key is found')
  t.equal(site.hits.filter((hit) => hit === '/jwks.json').length, before + 1, 'one extra fetch')
})
