/**
 * End to end: the metrics the alert rules read besides requests and upstream
 * calls. Redirect URIs the allowlist refuses, per endpoint and the preset the
 * URI belongs to; rate limit refusals, per endpoint and limit; client
 * metadata document fetches, per document and outcome (cache hits are not
 * fetches); error answers per endpoint and OAuth error code; and the
 * readiness checks at scrape time.
 */
import t from 'tap'
import { RedirectAllowlist } from '../../gateway/policy/redirect-uri.ts'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, postJson, registerClient } from '../support/flow.ts'
import { sample } from '../support/metrics.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const stack = await startStack({
  config: (file) => ({
    ...file,
    clientMetadataDocuments: { developmentAllowLoopback: true, timeoutMs: 500 },
    limits: { register: { perIp: { max: 4, windowSeconds: 60 } } },
  }),
})
const site = await startClientSite()
t.teardown(async () => {
  await site.close()
  await stack.close()
})

const metrics = async () => (await fetch(`${stack.gatewayUrl}/metrics`)).text()
const register = (redirectUri: string) => postJson(`${stack.gatewayUrl}/register`, { redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' })
const authorize = (client: { client_id: string; redirect_uris: string[] }) =>
  fetch(authorizeUrl(stack, client as never, pkcePair().challenge, { redirect_uri: client.redirect_uris[0]! }), { redirect: 'manual' })

t.test('redirect URIs the allowlist refuses are counted per endpoint and preset', async (t) => {
  // The presets are off in the test file: a Claude URI belongs to the claude preset all the same.
  t.equal((await register('https://claude.com/api/mcp/auth_callback')).status, 400)
  t.equal((await register('https://evil.example/callback')).status, 400)
  // Malformed is not a refusal by the allowlist.
  t.equal((await register('not a uri')).status, 400)
  const client = await registerClient(stack)
  // The allowlist changes under a registered client, as a reload does.
  const before = stack.gateway.gateway.allowlist
  stack.gateway.gateway.allowlist = new RedirectAllowlist(['https://claude.ai/api/mcp/auth_callback'])
  try {
    const answer = await authorize(client)
    t.equal(answer.status, 400, 'the authorization is refused')
  } finally {
    stack.gateway.gateway.allowlist = before
  }
  const text = await metrics()
  t.equal(sample(text, 'oauth_gateway_redirect_uri_refusals_total', { endpoint: 'register', preset: 'claude' }), 1)
  t.equal(sample(text, 'oauth_gateway_redirect_uri_refusals_total', { endpoint: 'register', preset: 'other' }), 1)
  t.equal(sample(text, 'oauth_gateway_redirect_uri_refusals_total', { endpoint: 'authorize', preset: 'chatgpt' }), 1, `${CHATGPT_REDIRECT} refused at /authorize`)
})

t.test('client metadata document fetches: ok, failed and invalid; a cache hit is no fetch', async (t) => {
  const good = `${site.url}/good.json`
  site.json('/good.json', { client_id: good, redirect_uris: [`${site.url}/callback`], token_endpoint_auth_method: 'none' }, { 'cache-control': 'max-age=60' })
  const invalid = `${site.url}/invalid.json`
  site.json('/invalid.json', { client_id: `${site.url}/someone-else.json`, redirect_uris: [`${site.url}/callback`] })
  const missing = `${site.url}/missing.json`
  for (const clientId of [good, good, invalid, missing]) {
    const answer = await authorize({ client_id: clientId, redirect_uris: [`${site.url}/callback`] })
    t.equal(answer.status, clientId === good ? 200 : 400, `${clientId}: ${answer.status}`)
  }
  const text = await metrics()
  t.equal(sample(text, 'oauth_gateway_client_metadata_fetches_total', { document: 'metadata', outcome: 'ok' }), 1, 'the second authorization used the cache')
  t.equal(sample(text, 'oauth_gateway_client_metadata_fetches_total', { document: 'metadata', outcome: 'invalid' }), 1)
  t.equal(sample(text, 'oauth_gateway_client_metadata_fetches_total', { document: 'metadata', outcome: 'failed' }), 1, 'a 404 is a failed fetch')
})

t.test('rate limit refusals are counted per endpoint and limit', async (t) => {
  const before = sample(await metrics(), 'oauth_gateway_rate_limit_refusals_total', { endpoint: 'register', limit: 'perIp' })
  let refused = 0
  for (let i = 0; i < 6; i++) if ((await register(CHATGPT_REDIRECT)).status === 429) refused++
  t.ok(refused >= 2, `${refused} registrations refused`)
  const text = await metrics()
  t.equal(sample(text, 'oauth_gateway_rate_limit_refusals_total', { endpoint: 'register', limit: 'perIp' }) - before, refused, 'each 429 counted')
  t.equal(sample(text, 'oauth_gateway_http_requests_total', { route: '/register', method: 'POST', status: '429' }), refused, 'as many as the 429 answers')
})

t.test('error answers are counted per endpoint and OAuth error code, an unknown path once', async (t) => {
  t.equal((await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=authorization_code' })).status, 401)
  t.equal((await fetch(`${stack.gatewayUrl}/nowhere/${'x'.repeat(12)}`)).status, 404)
  const text = await metrics()
  t.equal(sample(text, 'oauth_gateway_errors_total', { endpoint: '/token', error: 'invalid_client' }), 1, 'no client named')
  t.ok(sample(text, 'oauth_gateway_errors_total', { endpoint: 'unmatched', error: 'invalid_request' }) >= 1)
  t.ok(sample(text, 'oauth_gateway_errors_total', { endpoint: '/register', error: 'invalid_redirect_uri' }) >= 3, 'the refusals above')
  t.notMatch(text, /nowhere/)
})

t.test('the per-preset series exist at 0 before any flow, so rate() sees the first one', async (t) => {
  const text = await metrics()
  for (const name of ['oauth_gateway_flows_started_total', 'oauth_gateway_flows_completed_total', 'oauth_gateway_registrations_total']) {
    for (const preset of ['chatgpt', 'claude', 'loopback', 'vscodeWeb', 'cursor', 'inspector', 'other']) t.match(text, new RegExp(`^${name}\\{preset="${preset}"\\} \\d+$`, 'm'), `${name}{preset="${preset}"}`)
  }
  t.match(text, /^oauth_gateway_flows_started_total\{preset="cursor"\} 0$/m, 'at 0 until a flow starts')
})

t.test('the readiness checks are read at each scrape', async (t) => {
  const text = await metrics()
  t.equal(sample(text, 'oauth_gateway_ready', { check: 'upstream_metadata', store: 'memory' }), 1)
  t.equal(sample(text, 'oauth_gateway_ready', { check: 'store', store: 'memory' }), 1)
  // A store that stops answering shows at the next scrape, as /readyz does.
  const store = stack.gateway.gateway.store
  const ping = store.ping
  store.ping = async () => false
  try {
    t.equal(sample(await metrics(), 'oauth_gateway_ready', { check: 'store', store: 'memory' }), 0)
    t.equal((await fetch(`${stack.gatewayUrl}/readyz`)).status, 503)
  } finally {
    store.ping = ping
  }
  t.equal(sample(await metrics(), 'oauth_gateway_ready', { check: 'store', store: 'memory' }), 1)
})
