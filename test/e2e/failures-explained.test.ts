/**
 * End to end: every failure explains itself. The client's error_description
 * names the parameter (or the upstream's answer) and the rule; the log line
 * of a refused request names the client, the step and the upstream's own
 * answer (status and error code); and no log line holds a code, token,
 * verifier or secret, whatever went wrong.
 */
import t from 'tap'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { authorizeUrl, exchangeCode, obtainCode, pkcePair, postForm, registerClient, type RegisteredClient } from '../support/flow.ts'
import { refreshTokenFor } from '../support/grants.ts'
import { capturedLog } from '../support/log-capture.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, TEST_SECRET } from '../support/stack.ts'
import type { UpstreamOptions } from '../support/upstream.ts'

interface LogLine {
  msg: string
  level: number
  endpoint?: string
  step?: string
  client?: { name?: string; handle: string }
  error?: string
  error_description?: string
  upstream?: { call?: string; status?: number; content_type?: string; error?: string; error_description?: string; excerpt?: string; auth_method?: string }
  hint?: string
}

/** Starts a stack whose gateway logs, as in production, into an array. */
async function loggedStack(upstream: Partial<UpstreamOptions> = {}) {
  const log = capturedLog()
  const stack = await startStack({ logger: log.logger, upstream })
  t.teardown(() => stack.close())
  const refusals = () => log.parsed<LogLine>().filter((line) => line.msg === 'request refused' || line.msg === 'request failed')
  return { stack, lines: log.lines, refusals }
}

const secrets: string[] = []
/** Remembers something that must never appear in a log line. */
function secret<T extends string | undefined>(value: T): T {
  if (value) secrets.push(value)
  return value
}

function tokenFields(client: RegisteredClient, code: string, verifier: string) {
  return { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }
}

const plain = await loggedStack()
const html = await loggedStack({ htmlErrors: true })
secrets.push(TEST_SECRET, plain.stack.upstream.clientSecret, plain.stack.upstream.introspection.clientSecret)

t.test('a wrong code_verifier: the description names it, the log names the client and the step', async (t) => {
  const client = await registerClient(plain.stack)
  const { code, verifier } = await obtainCode(plain.stack, client)
  secret(code)
  secret(verifier)
  const wrong = secret(pkcePair().verifier)
  const body = await failsWith(t, await postForm(`${plain.stack.gatewayUrl}/token`, tokenFields(client, code, wrong)), 400, 'invalid_grant')
  t.match(body.error_description, /^code_verifier: does not match the code_challenge .*\(RFC 7636 section 4\.6\)$/)
  const line = plain.refusals().at(-1)!
  t.match(line, { msg: 'request refused', endpoint: '/token', step: 'checkPkce', error: 'invalid_grant', client: { name: 'ChatGPT', handle: clientHandle(client.client_id) } })
  const tokens = await exchangeCode(plain.stack, client, { code, verifier, state: '', redirect: new URL(CHATGPT_REDIRECT) })
  secret(tokens.access_token)
  secret(tokens.refresh_token)
})

t.test('an upstream refusal: the log line carries the upstream\'s status and error code', async (t) => {
  const client = await registerClient(plain.stack)
  const refreshToken = secret(await refreshTokenFor(plain.stack.gateway, client.client_id, 'upstream-token-0123456789abcdefghijklmnop'))
  secrets.push('upstream-token-0123456789abcdefghijklmnop')
  const body = await failsWith(t, await postForm(`${plain.stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id }), 400, 'invalid_grant')
  t.match(body.error_description, /the NeonPanel sign-in service refused the token \(refresh_token\) request: invalid_grant/)
  const line = plain.refusals().at(-1)!
  t.match(line, {
    step: 'refreshAtUpstream',
    client: { name: 'ChatGPT' },
    error: 'invalid_grant',
    upstream: { call: 'token (refresh_token)', status: 400, error: 'invalid_grant', auth_method: 'client_secret_basic' },
  })
})

t.test('an upstream HTML page: the log line has its status, content type and a redacted excerpt', async (t) => {
  const client = await registerClient(html.stack)
  const refreshToken = secret(await refreshTokenFor(html.stack.gateway, client.client_id, 'another-upstream-token-0123456789abcdef'))
  secrets.push('another-upstream-token-0123456789abcdef')
  await failsWith(t, await postForm(`${html.stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id }), 502, 'server_error')
  const line = html.refusals().at(-1)!
  t.match(line, { msg: 'request failed', step: 'refreshAtUpstream', error: 'server_error', upstream: { status: 400, content_type: /^text\/html/, excerpt: /Something went wrong/ } })
  t.equal(line.level, 50, 'logged as an error: the gateway or the upstream must be fixed')
})

t.test('a redirect URI of a switched-off preset: the page and the log say which preset', async (t) => {
  const registration = await fetch(`${plain.stack.gatewayUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Cursor', redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback'], token_endpoint_auth_method: 'none' }),
  })
  const body = await failsWith(t, registration, 400, 'invalid_redirect_uri')
  t.match(body.error_description, /^redirect_uris\[0\] is not allowed by this gateway: cursor:\/\/anysphere\.cursor-mcp\/oauth\/callback \(it belongs to the cursor preset, which is switched off in redirectPresets\)$/)
  t.match(plain.refusals().at(-1), { endpoint: '/register', error: 'invalid_redirect_uri', error_description: /cursor preset/ })
})

t.test('an unknown client at /authorize: the page names client_id', async (t) => {
  const client = await registerClient(plain.stack)
  const response = await fetch(authorizeUrl(plain.stack, client, pkcePair().challenge, { client_id: 'not-a-client' }), { redirect: 'manual' })
  t.equal(response.status, 400)
  t.match(await response.text(), /unknown client_id/)
  t.match(plain.refusals().at(-1), { endpoint: '/authorize', step: 'findClient', error: 'invalid_client' })
})

t.test('refusals at /authorize after the client is known name it and the step', async (t) => {
  const client = await registerClient(plain.stack)
  const response = await fetch(authorizeUrl(plain.stack, client, pkcePair().challenge, { code_challenge_method: 'plain' }), { redirect: 'manual' })
  const location = new URL(response.headers.get('location')!)
  t.equal(location.searchParams.get('error'), 'invalid_request')
  t.match(location.searchParams.get('error_description'), /^code_challenge_method: must be S256, not plain/)
  t.match(plain.refusals().at(-1), { step: 'checkPkce', client: { name: 'ChatGPT', handle: clientHandle(client.client_id) } })
})

t.test('a stale client at /token: 401 naming client_id, logged with the step', async (t) => {
  const body = await failsWith(t, await postForm(`${plain.stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: 'x', client_id: 'stale-client' }), 401, 'invalid_client')
  t.match(body.error_description, /^client_id: unknown to this gateway/)
  t.match(plain.refusals().at(-1), { step: 'authenticateClient', error: 'invalid_client' })
})

t.test('no log line holds a code, token, verifier or secret', async (t) => {
  const all = [...plain.lines, ...html.lines].join('\n')
  t.ok(secrets.length >= 8, `checked for ${secrets.length} secrets`)
  for (const value of secrets) t.notOk(all.includes(value), `not logged: ${value.slice(0, 6)}…`)
  t.notMatch(all, /"(authorization|cookie)"/i, 'no headers')
  t.notMatch(all, /[?&](code|state)=/, 'no query strings')
})
