/**
 * The Admin API against the real parts (oidc-provider upstream, the gateway
 * over HTTP, grants in a SQLite file): off without ADMIN_TOKEN, the bearer
 * check, every kind of bad input answered with a 4xx JSON error and nothing
 * changed, blocks by each key refusing /authorize (a page naming the reason,
 * never a redirect), /token (codes and refresh tokens alike) and /register,
 * and lifted again; the audit lines and the admin metric.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { admin, adminFetch, ADMIN_TOKEN } from '../support/admin.ts'
import { consentForm, CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { authorizeUrl, exchangeCode, obtainCode, pkcePair, postCodeExchange, postForm, postJson, registerClient, type RegisteredClient } from '../support/flow.ts'
import { capturedLog } from '../support/log-capture.ts'
import { sample } from '../support/metrics.ts'
import { failsWith, gatewayFile, startStack, TEST_SECRET, type Stack } from '../support/stack.ts'

const directory = mkdtempSync(join(tmpdir(), 'gateway-admin-'))
const log = capturedLog()
const stack = await startStack({ env: { ADMIN_TOKEN }, logger: log.logger, grantStorage: new SqliteGrantStorage(join(directory, 'state.sqlite')) })
t.teardown(async () => {
  await stack.close()
  rmSync(directory, { recursive: true, force: true })
})
const url = stack.gatewayUrl

/** /authorize as a browser opens it, without following the answer. */
function openAuthorize(stack: Stack, client: RegisteredClient) {
  return fetch(authorizeUrl(stack, client, pkcePair().challenge), { redirect: 'manual' })
}

t.test('without ADMIN_TOKEN every /admin path is 404, as any unknown path', async (t) => {
  const off = await startStack()
  t.teardown(() => off.close())
  for (const [method, path] of [['GET', '/admin/clients'], ['GET', '/admin/grants'], ['DELETE', '/admin/grants/g_1'], ['POST', '/admin/grants/revoke'], ['POST', '/admin/blocks'], ['GET', '/admin/blocks'], ['DELETE', '/admin/blocks/b_1'], ['GET', '/admin']] as const) {
    const response = await adminFetch(off.gatewayUrl, path, { method, ...(method === 'POST' ? { body: { client_id: 'x', reason: 'r' } } : {}) })
    const body = await failsWith(t, response, 404, 'invalid_request')
    t.match(body.error_description, /no such endpoint/, `${method} ${path}`)
  }
})

t.test('an ADMIN_TOKEN shorter than 32 characters stops start-up with a message naming the rule', async (t) => {
  const short = 'short-admin-token-0123456789'
  const dir = mkdtempSync(join(tmpdir(), 'gateway-admin-short-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const configPath = join(dir, 'gateway.yaml')
  const { writeFileSync } = await import('node:fs')
  writeFileSync(configPath, JSON.stringify(gatewayFile('http://127.0.0.1:1', stack.upstream.issuer, stack.mcp.url)))
  const child = spawn(process.execPath, ['gateway/server.ts'], {
    env: { PATH: process.env.PATH ?? '', GATEWAY_CONFIG: configPath, GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: 'x', ADMIN_TOKEN: short, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const [code] = (await once(child, 'close')) as [number]
  t.equal(code, 78, 'exits with EX_CONFIG')
  t.match(stderr, /ADMIN_TOKEN: must be at least 32 characters/)
  t.notOk(stderr.includes(short), 'the message does not quote the token')
})

t.test('every call needs the token as a bearer token', async (t) => {
  const missing = await adminFetch(url, '/admin/clients', { token: null })
  await failsWith(t, missing, 401, 'invalid_token')
  t.equal(missing.headers.get('www-authenticate'), 'Bearer realm="oauth-gateway-admin"', 'RFC 6750 §3.1: no error code without credentials')
  const wrong = await adminFetch(url, '/admin/clients', { token: `${ADMIN_TOKEN.slice(0, -1)}x` })
  await failsWith(t, wrong, 401, 'invalid_token')
  t.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="oauth-gateway-admin", error="invalid_token"')
  await failsWith(t, await adminFetch(url, '/admin/clients', { token: 'short' }), 401, 'invalid_token')
  await failsWith(t, await adminFetch(url, '/admin/clients', { token: `${ADMIN_TOKEN}${ADMIN_TOKEN}` }), 401, 'invalid_token')
  await failsWith(t, await adminFetch(url, '/admin/clients', { token: null, headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` } }), 401, 'invalid_token')
  await failsWith(t, await adminFetch(url, '/admin/clients', { token: null, headers: { authorization: ADMIN_TOKEN } }), 401, 'invalid_token')
  // Refused before the body is read: an unauthenticated caller cannot probe the validation.
  await failsWith(t, await adminFetch(url, '/admin/blocks', { token: null, body: '{not json' }), 401, 'invalid_token')
  await failsWith(t, await adminFetch(url, '/admin/nothing-here', { token: null }), 401, 'invalid_token')

  const right = await adminFetch(url, '/admin/clients', { token: null, headers: { authorization: `bearer ${ADMIN_TOKEN}`, origin: 'https://evil.example' } })
  t.equal(right.status, 200, 'the scheme is case-insensitive')
  t.equal(right.headers.get('access-control-allow-origin'), null, 'no CORS: no page may read the Admin API')
  t.equal(right.headers.get('cache-control'), 'no-store')
  await failsWith(t, await adminFetch(url, '/admin/nothing-here'), 404, 'invalid_request')
  await failsWith(t, await adminFetch(url, '/admin/blocks', { method: 'PUT', body: {} }), 404, 'invalid_request')
})

t.test('bad input is a 4xx JSON error and changes nothing', async (t) => {
  const before = await admin(url, '/admin/blocks')
  for (const query of ['cursor=not-a-cursor', 'cursor=%7B%7D', `cursor=${Buffer.from('{"a":5}').toString('base64url')}`, 'limit=0', 'limit=1001', 'limit=abc', 'limit=-1', 'limit=1.5', 'limit=1&limit=2', 'cursor=a&cursor=b']) {
    for (const path of ['/admin/clients', '/admin/grants']) {
      const body = await failsWith(t, await adminFetch(url, `${path}?${query}`), 400, 'invalid_request')
      t.match(body.error_description, /^(limit|cursor): /, `${path}?${query}: ${body.error_description}`)
    }
  }
  await failsWith(t, await adminFetch(url, '/admin/grants?user=a&user=b'), 400, 'invalid_request')

  const notFound = await failsWith(t, await adminFetch(url, '/admin/grants/g_unknown', { method: 'DELETE' }), 404, 'invalid_request')
  t.match(notFound.error_description, /grant_id/)
  await failsWith(t, await adminFetch(url, '/admin/blocks/b_unknown', { method: 'DELETE' }), 404, 'invalid_request')

  const badBlocks: Array<[string, unknown]> = [
    ['no key', { reason: 'spam' }],
    ['two keys', { client_id: 'a', redirect_host: 'evil.example', reason: 'spam' }],
    ['no reason', { client_id: 'a' }],
    ['empty reason', { client_id: 'a', reason: '  ' }],
    ['a number', { client_id: 5, reason: 'spam' }],
    ['an unknown field', { client_id: 'a', reason: 'spam', expires: 3 }],
    ['a list', [{ client_id: 'a', reason: 'spam' }]],
    ['a string', 'client_id'],
    ['null', null],
    ['a host with a path', { redirect_host: 'evil.example/cb', reason: 'spam' }],
    ['a URL as host', { redirect_host: 'https://evil.example', reason: 'spam' }],
    ['a pattern of stars', { client_name_pattern: '***', reason: 'spam' }],
    ['a long pattern', { client_name_pattern: 'x'.repeat(201), reason: 'spam' }],
    ['a long reason', { client_id: 'a', reason: 'x'.repeat(501) }],
  ]
  for (const [name, body] of badBlocks) {
    const answer = await failsWith(t, await adminFetch(url, '/admin/blocks', { body: JSON.stringify(body) }), 400, 'invalid_request')
    t.ok(answer.error_description, `${name}: ${answer.error_description}`)
  }
  await failsWith(t, await adminFetch(url, '/admin/blocks', { body: '{"client_id": "a", "reason": ' }), 400, 'invalid_request')
  await failsWith(t, await adminFetch(url, '/admin/blocks', { body: 'client_id=a&reason=spam', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'invalid_request')
  await failsWith(t, await adminFetch(url, '/admin/blocks', { method: 'POST', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request')
  await failsWith(t, await adminFetch(url, '/admin/blocks', { body: { client_id: 'a', reason: 'x'.repeat(20_000) } }), 413, 'invalid_request')
  for (const body of [{}, { client_id: 'a', user: 'b' }, { clientId: 'a' }, { client_id: '' }, { user: 7 }]) {
    await failsWith(t, await adminFetch(url, '/admin/grants/revoke', { body }), 400, 'invalid_request')
  }
  t.same(await admin(url, '/admin/blocks'), before, 'no block was added by any of them')
})

t.test('a client id block refuses /authorize with a page naming the reason, and /token for codes and refresh tokens', async (t) => {
  const client = await registerClient(stack, { client_name: 'Shady Connector' })
  const other = await registerClient(stack, { client_name: 'Claude' })
  const obtained = await obtainCode(stack, client)
  const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
  t.ok(tokens.refresh_token, 'a refresh token before the block')

  const { block_id: blockId } = await admin(url, '/admin/blocks', { body: { client_id: client.client_id, reason: 'phishing reported by the security team' } }, 201)
  t.match(blockId, /^b_/)
  const listed = await admin(url, '/admin/blocks')
  t.match(listed.blocks, [{ block_id: blockId, client_id: client.client_id, reason: 'phishing reported by the security team', created_at: /^\d{4}-\d\d-\d\dT/ }])

  const page = await openAuthorize(stack, client)
  t.equal(page.status, 400, 'an error page')
  t.equal(page.headers.get('location'), null, 'never a redirect to the blocked client')
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(await page.text(), /blocked by the administrators of this gateway: phishing reported by the security team/)

  const code = await failsWith(t, await postCodeExchange(stack, client, obtained), 401, 'invalid_client')
  t.match(code.error_description, /blocked.*phishing/)
  const refresh = await failsWith(t, await postForm(`${url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id }), 401, 'invalid_client')
  t.match(refresh.error_description, /blocked/)

  t.equal((await openAuthorize(stack, other)).status, 200, 'another client still signs in')
  const clients = await admin(url, '/admin/clients')
  t.match(clients.clients.find((c: any) => c.client_id === client.client_id), { client_name: 'Shady Connector', blocked: true, block_id: blockId })
  t.match(clients.clients.find((c: any) => c.client_id === other.client_id), { client_name: 'Claude', blocked: false })

  await admin(url, `/admin/blocks/${blockId}`, { method: 'DELETE' }, 204)
  t.equal((await openAuthorize(stack, client)).status, 200, 'unblocked: it signs in again')
  await failsWith(t, await adminFetch(url, `/admin/blocks/${blockId}`, { method: 'DELETE' }), 404, 'invalid_request')
})

t.test('a redirect host block refuses registrations and sign-ins of clients redirecting there', async (t) => {
  const client = await registerClient(stack, { client_name: 'Local tool', redirect_uris: ['http://127.0.0.1/callback'] })
  const { block_id: blockId } = await admin(url, '/admin/blocks', { body: { redirect_host: '127.0.0.1', reason: 'no local tools here' } }, 201)
  const registration = await failsWith(t, await postJson(`${url}/register`, { client_name: 'Another', redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' }), 400, 'invalid_redirect_uri')
  t.match(registration.error_description, /^redirect_uris: this app is blocked .*no local tools here/)
  const page = await openAuthorize(stack, client)
  t.equal(page.status, 400)
  t.equal(page.headers.get('location'), null)
  t.match(await page.text(), /no local tools here/)
  t.equal((await postJson(`${url}/register`, { redirect_uris: ['https://claude.ai/api/mcp/auth_callback'], token_endpoint_auth_method: 'none' })).status, 201, 'other hosts register')
  await admin(url, `/admin/blocks/${blockId}`, { method: 'DELETE' }, 204)
  t.equal((await postJson(`${url}/register`, { redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' })).status, 201, 'lifted')
})

t.test('a name pattern block refuses registrations and clients whose name matches, whatever its case', async (t) => {
  const client = await registerClient(stack, { client_name: 'Free GPT Premium' })
  const { block_id: blockId } = await admin(url, '/admin/blocks', { body: { client_name_pattern: 'free*gpt*', reason: 'impersonates ChatGPT' } }, 201)
  const registration = await failsWith(t, await postJson(`${url}/register`, { client_name: 'FREE ChatGPT', redirect_uris: ['https://chatgpt.com/connector/oauth/x'], token_endpoint_auth_method: 'none' }), 400, 'invalid_client_metadata')
  t.match(registration.error_description, /^client_name: this app is blocked .*impersonates ChatGPT/)
  t.equal((await openAuthorize(stack, client)).status, 400, 'the registered client is refused too')
  t.equal((await postJson(`${url}/register`, { client_name: 'ChatGPT', redirect_uris: ['https://chatgpt.com/connector/oauth/x'], token_endpoint_auth_method: 'none' })).status, 201, 'a name that does not match')
  await admin(url, `/admin/blocks/${blockId}`, { method: 'DELETE' }, 204)
})

t.test('a block made during a sign-in stops it at the consent answer or the callback, with the page, never a redirect', async (t) => {
  const client = await registerClient(stack, { client_name: 'Mid-flight' })
  const atConsent = new CookieBrowser()
  const consentPage = await atConsent.get(authorizeUrl(stack, client, pkcePair().challenge))
  const form = consentForm(await consentPage.text())
  t.ok(form, 'the consent page is shown')
  // Signed in as far as the upstream's answer, which the browser has not yet brought back.
  const signedIn = await signInAndFollow(new CookieBrowser(), authorizeUrl(stack, client, pkcePair().challenge).href, stack.upstream.account, (next) => next.pathname === '/callback')
  t.ok(signedIn.redirect, 'the upstream sends the browser back to the gateway')

  const { block_id: blockId } = await admin(url, '/admin/blocks', { body: { redirect_host: 'chatgpt.com', reason: 'connector under investigation' } }, 201)
  const consented = await atConsent.postForm(new URL(form!.action, url), { ...form!.fields, decision: 'approve' })
  t.equal(consented.status, 400, 'the consent answer is refused')
  t.equal(consented.headers.get('location'), null, 'not sent on to the upstream or back to the client')
  t.match(await consented.text(), /connector under investigation/)
  const callback = await fetch(signedIn.redirect!, { redirect: 'manual' })
  t.equal(callback.status, 400, 'the callback is refused')
  t.equal(callback.headers.get('location'), null, 'no code goes to the client')
  t.match(await callback.text(), /blocked by the administrators of this gateway: connector under investigation/)
  await admin(url, `/admin/blocks/${blockId}`, { method: 'DELETE' }, 204)

  // By client id too: the sign-in knows the client only by its handle.
  const again = await signInAndFollow(new CookieBrowser(), authorizeUrl(stack, client, pkcePair().challenge).href, stack.upstream.account, (next) => next.pathname === '/callback')
  const byId = await admin(url, '/admin/blocks', { body: { client_id: client.client_id, reason: 'this one only' } }, 201)
  const refused = await fetch(again.redirect!, { redirect: 'manual' })
  t.equal(refused.status, 400)
  t.match(await refused.text(), /this one only/)
  await admin(url, `/admin/blocks/${byId.block_id}`, { method: 'DELETE' }, 204)
})

t.test('each admin action writes one audit line, and /metrics counts the calls', async (t) => {
  const audit = log.parsed().filter((line) => line.audit === true)
  const actions = audit.map((line) => line.action)
  for (const action of ['blocks.create', 'blocks.list', 'blocks.delete', 'clients.list']) t.ok(actions.includes(action), `an audit line for ${action}`)
  for (const line of audit) {
    t.equal(line.actor, 'admin')
    t.match(line.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    t.equal(typeof line.time, 'number')
  }
  t.match(audit.find((line) => line.action === 'blocks.create' && line.kind === 'client_name_pattern'), { value: 'free*gpt*', reason: 'impersonates ChatGPT', block_id: /^b_/ })
  t.notOk(log.lines.join('\n').includes(ADMIN_TOKEN), 'the admin token is never logged')

  const metrics = await (await fetch(`${url}/metrics`)).text()
  t.ok(sample(metrics, 'oauth_gateway_admin_requests_total', { action: 'blocks.create', outcome: 'ok' }) >= 3, 'blocks created')
  t.ok(sample(metrics, 'oauth_gateway_admin_requests_total', { action: 'blocks.create', outcome: 'refused' }) >= 10, 'bad bodies refused')
  t.ok(sample(metrics, 'oauth_gateway_admin_requests_total', { action: 'clients.list', outcome: 'unauthorized' }) >= 5, 'calls without the token')
})

t.test('the client listing names each client\'s application_type, as answered at registration', async (t) => {
  const mislabelled = await registerClient(stack, { client_name: 'Mislabelled tool', application_type: 'web', redirect_uris: ['http://127.0.0.1:4567/callback'] })
  const hosted = await registerClient(stack, { client_name: 'Hosted connector' })
  t.equal(mislabelled.application_type, 'native', 'corrected at registration')
  const { clients } = await admin(url, `/admin/clients?limit=${1000}`)
  t.equal(clients.find((c: any) => c.client_id === mislabelled.client_id)?.application_type, 'native', 'the corrected type')
  t.equal(clients.find((c: any) => c.client_id === hosted.client_id)?.application_type, 'web')
})
