/**
 * End to end: clients that identify themselves by the URL of a Client ID
 * Metadata Document, served by the test on loopback (the development switch
 * on), and every way such a document is refused. Refusals at /authorize are
 * the HTML error page (status 400, never a redirect); at /token, 401
 * invalid_client.
 */
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, postForm, type RegisteredClient } from '../support/flow.ts'
import { startStack } from '../support/stack.ts'

const TIMEOUT_MS = 500
const stack = await startStack({
  config: (file) => ({ ...file, clientMetadataDocuments: { developmentAllowLoopback: true, timeoutMs: TIMEOUT_MS } }),
})
const site = await startClientSite()
t.teardown(async () => {
  await site.close()
  await stack.close()
})

const redirectUri = `${site.url}/callback`
/** A client described by a document at `path` on the test's site. */
function documentClient(path: string, overrides: Record<string, unknown> = {}, headers: Record<string, string> = { 'cache-control': 'max-age=60' }): RegisteredClient {
  const clientId = `${site.url}${path}`
  site.json(path, { client_id: clientId, client_name: 'Document Client', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', ...overrides }, headers)
  return { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: [] }
}

/** What /authorize answers for the client (no browser: the refusals are pages, not redirects). */
async function authorize(client: RegisteredClient, parameters: Record<string, string> = {}) {
  const response = await fetch(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri, ...parameters }), { redirect: 'manual' })
  return { response, body: await response.text() }
}

type Asserts = Pick<typeof t, 'equal' | 'match'>

async function refused(t: Asserts, client: RegisteredClient, reason: RegExp, parameters: Record<string, string> = {}) {
  const { response, body } = await authorize(client, parameters)
  t.equal(response.status, 400, 'status 400')
  t.equal(response.headers.get('location'), null, 'no redirect')
  t.match(response.headers.get('content-type'), /^text\/html/, 'the error page')
  t.match(body, reason, 'says why')
  return body
}

const hitsOf = (path: string) => site.hits.filter((hit) => hit === path).length

t.test('the metadata advertises client metadata documents and private_key_jwt', async (t) => {
  const metadata = (await (await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
  t.equal(metadata.client_id_metadata_document_supported, true)
  t.match(metadata.token_endpoint_auth_methods_supported, ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'])
  t.ok((metadata.token_endpoint_auth_signing_alg_values_supported as string[]).includes('ES256'), 'the signing algorithms (RFC 8414 §2)')
  t.notOk((metadata.token_endpoint_auth_signing_alg_values_supported as string[]).some((alg) => alg.startsWith('HS') || alg === 'none'), 'never a shared-secret or unsigned one')
})

t.test('a document client goes through consent, signs in and exchanges its code; the document is fetched once', async (t) => {
  const client = documentClient('/flow/client.json')
  const { verifier, challenge } = pkcePair()
  const url = authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri })
  const browser = new CookieBrowser()
  const consentPage = await (await browser.get(url)).text()
  t.match(consentPage, /Connect Document Client to your NeonPanel account\?/, 'the document\'s client_name')
  t.match(consentPage, new RegExp(`Verified publisher: <strong>${new URL(site.url).host}</strong>`), 'the host that publishes it')
  const result = await signInAndFollow(browser, url.href, stack.upstream.account, (next) => next.href.startsWith(redirectUri))
  const code = result.redirect?.searchParams.get('code')
  t.ok(code, 'a code at the client\'s redirect URI')
  t.equal(result.redirect?.searchParams.get('iss'), stack.gatewayUrl)

  const token = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'authorization_code', code: code!, code_verifier: verifier, redirect_uri: redirectUri, client_id: client.client_id })
  t.equal(token.status, 200, 'the code exchange works')
  const tokens = (await token.json()) as { access_token?: string; refresh_token?: string }
  t.ok(tokens.access_token)
  const refresh = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id })
  t.equal(refresh.status, 200, 'and the refresh')
  t.equal(hitsOf('/flow/client.json'), 1, 'one fetch for the whole flow: the cache honours max-age')
})

t.test('refused documents', async (t) => {
  t.test('a document naming another client_id', async (t) => {
    const client = documentClient('/mismatch.json', { client_id: `${site.url}/mismatch.json?v=2` })
    await refused(t, client, /names another client_id/)
  })

  t.test('a redirect URI that is not in the document', async (t) => {
    const client = documentClient('/one-redirect.json', { redirect_uris: [`${site.url}/other-callback`] })
    await refused(t, client, /is not listed in the app&#39;s client metadata document/)
  })

  t.test('a redirect URI in the document that the ops allowlist does not allow', async (t) => {
    const elsewhere = 'https://elsewhere.example/callback'
    const client = documentClient('/not-allowed.json', { redirect_uris: [elsewhere] })
    await refused(t, client, /https:\/\/elsewhere\.example\/callback is not allowed by this gateway/, { redirect_uri: elsewhere })
  })

  t.test('an oversized document, with or without Content-Length', async (t) => {
    const big = documentClient('/big.json', { padding: 'x'.repeat(6000) })
    await refused(t, big, /larger than 5120 bytes/)
    site.on('/big-chunked.json', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(`{"client_id":"${site.url}/big-chunked.json","padding":"`)
      for (let i = 0; i < 8; i++) res.write('x'.repeat(1000))
      res.end('"}')
    })
    await refused(t, { ...big, client_id: `${site.url}/big-chunked.json` }, /larger than 5120 bytes/)
  })

  t.test('a server that does not answer in time', async (t) => {
    const waiting: ServerResponse[] = []
    t.teardown(() => waiting.forEach((res) => res.destroy()))
    site.on('/slow.json', (_req, res) => void waiting.push(res))
    const started = Date.now()
    await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/slow.json` }, new RegExp(`did not answer within ${TIMEOUT_MS} ms`))
    t.ok(Date.now() - started < 5000, 'the gateway gave up on its configured timeout, not the browser\'s')
  })

  t.test('a redirect response, not followed', async (t) => {
    documentClient('/target.json')
    site.on('/moved.json', (_req, res) => void res.writeHead(301, { location: `${site.url}/target.json` }).end())
    const before = hitsOf('/target.json')
    await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/moved.json` }, /redirect \(HTTP 301\); redirects are not followed/)
    t.equal(hitsOf('/target.json'), before, 'the target was never fetched')
  })

  t.test('a document that is not there, or not JSON', async (t) => {
    await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/nothing-here.json` }, /answered HTTP 404 instead of 200/)
    site.on('/page.json', (_req, res) => void res.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>'))
    await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/page.json` }, /is not valid JSON/)
  })

  t.test('a document asking for a shared secret', async (t) => {
    await refused(t, documentClient('/secret.json', { token_endpoint_auth_method: 'client_secret_basic' }), /can only use none or private_key_jwt/)
  })

  t.test('a client id URL that is not canonical', async (t) => {
    const body = await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/a/../unused.json` }, /canonical form/)
    t.match(body, /ask its maker to fix it/, 'and what to try')
  })

  t.test('nothing is cached from a refused document', async (t) => {
    const before = hitsOf('/mismatch.json')
    await refused(t, { ...documentClient('/unused.json'), client_id: `${site.url}/mismatch.json` }, /names another client_id/)
    t.equal(hitsOf('/mismatch.json'), before + 1, 'fetched again')
  })
})

t.test('at the token endpoint a broken document is 401 invalid_client', async (t) => {
  const response = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'authorization_code', code: 'x', code_verifier: 'v'.repeat(43), client_id: `${site.url}/nothing.json` })
  t.equal(response.status, 401)
  const body = (await response.json()) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_client')
  t.match(body.error_description, /answered HTTP 404/)
})

t.test('without the development switch: https only, and no private or loopback address even after DNS', async (t) => {
  const strict = await startStack()
  t.teardown(() => strict.close())
  const before = site.hits.length
  const cases: Array<[string, RegExp]> = [
    [`${site.url}/flow/client.json`, /must be an https URL/],
    [`https://localhost:${new URL(site.url).port}/flow/client.json`, /special-use address/],
    [`https://127.0.0.1:${new URL(site.url).port}/flow/client.json`, /special-use address/],
    ['https://10.20.30.40/client.json', /special-use address/],
    ['https://169.254.169.254/latest/meta-data/client.json', /special-use address/],
    ['https://[::ffff:127.0.0.1]/client.json', /special-use address/],
  ]
  for (const [clientId, reason] of cases) {
    const url = authorizeUrl(strict, { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: [] }, pkcePair().challenge)
    const response = await fetch(url, { redirect: 'manual' })
    t.equal(response.status, 400, `${clientId}: 400`)
    t.match(await response.text(), reason, `${clientId}: says why`)
  }
  t.equal(site.hits.length, before, 'no request reached the document server')
})

t.test('switched off: not advertised, and a URL client id is refused', async (t) => {
  const off = await startStack({ config: (file) => ({ ...file, clientMetadataDocuments: { enabled: false } }) })
  t.teardown(() => off.close())
  const metadata = (await (await fetch(`${off.gatewayUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
  t.equal(metadata.client_id_metadata_document_supported, false)
  t.notOk((metadata.token_endpoint_auth_methods_supported as string[]).includes('private_key_jwt'))
  const url = authorizeUrl(off, { client_id: 'https://client.example/client.json', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: [] }, pkcePair().challenge)
  const response = await fetch(url, { redirect: 'manual' })
  t.equal(response.status, 400)
  t.match(await response.text(), /this gateway does not accept client metadata documents/)
})
