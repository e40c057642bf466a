/**
 * End to end: what ops see of one complete flow. Every request gets an id
 * (sent back in X-Request-Id); the lines of one flow (authorize, consent,
 * callback, code exchange, refresh, revocation) share the id of the request
 * that started it and each names its step, outcome and client; the captured
 * log holds no secret, code, token or cookie; and /metrics counts the flow.
 */
import t from 'tap'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import type { CodeGrant } from '../../gateway/routes/callback.ts'
import { basicAuth, obtainCode, postForm, registerClient } from '../support/flow.ts'
import { upstreamRefreshTokenOf } from '../support/grants.ts'
import { capturedLog } from '../support/log-capture.ts'
import { sample } from '../support/metrics.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, TEST_SECRET } from '../support/stack.ts'

interface LogLine {
  msg: string
  reqId?: string
  step?: string
  outcome?: string
  flow?: string
  client?: { name?: string; handle: string }
  req?: { method: string; path: string }
}

const log = capturedLog()
const stack = await startStack({ logger: log.logger })
t.teardown(() => stack.close())
const { lines } = log
const parsed = () => log.parsed<LogLine>()

t.test('one complete flow: a shared flow id, a line per step, no secret in the log, counted in /metrics', async (t) => {
  const client = await registerClient(stack, { token_endpoint_auth_method: 'client_secret_basic' })
  const clientSecret = client.client_secret!
  const handle = clientHandle(client.client_id)
  const obtained = await obtainCode(stack, client)
  const auth = { authorization: basicAuth(client.client_id, clientSecret) }
  const exchanged = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'authorization_code', code: obtained.code, code_verifier: obtained.verifier, redirect_uri: CHATGPT_REDIRECT }, auth)
  t.equal(exchanged.status, 200)
  const tokens = (await exchanged.json()) as { access_token: string; refresh_token: string }
  // What must never be written includes the upstream's refresh tokens, kept (sealed) in the grant: read them while it lives.
  const upstreamRefresh = await upstreamRefreshTokenOf(stack.gateway, tokens.refresh_token)
  const refreshed = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, auth)
  t.equal(refreshed.status, 200)
  const renewed = (await refreshed.json()) as { access_token: string; refresh_token: string }
  const renewedUpstreamRefresh = await upstreamRefreshTokenOf(stack.gateway, renewed.refresh_token)
  const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: renewed.refresh_token, token_type_hint: 'refresh_token' }, auth)
  t.equal(revoked.status, 200)
  // A refused refresh (its grant ended with the revocation) is a step line too; it never reaches the upstream.
  await failsWith(t, await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: renewed.refresh_token }, auth), 400, 'invalid_grant')

  const log = parsed()
  const authorizeLine = log.find((line) => line.step === 'authorize')!
  t.ok(authorizeLine, 'the authorize step is logged')
  const flow = authorizeLine.flow!
  t.equal(flow, authorizeLine.reqId, 'a flow is named by the request id of its /authorize')
  const steps = log.filter((line) => line.flow === flow).map((line) => `${line.step} ${line.outcome}`)
  t.same(steps, [
    'authorize consent_asked',
    'consent approved',
    'callback code_issued',
    'token issued',
    'token issued',
    'revoke revoked',
    'refreshAtUpstream refused',
  ], 'one line per step, in order, each with its outcome, all in one flow')
  for (const line of log.filter((line) => line.flow === flow)) t.equal(line.client?.handle, handle, `${line.step} names the client`)
  t.match(log.find((line) => line.step === 'register'), { outcome: 'registered', client: { name: 'ChatGPT', handle } }, 'the registration names the client')
  const requestIds = new Set(log.filter((line) => line.flow === flow).map((line) => line.reqId))
  t.equal(requestIds.size, 7, 'each request of the flow keeps its own request id besides the flow id')

  // What must never be written: open the sealed code and refresh tokens to know the upstream's too.
  const sealer = new Sealer([TEST_SECRET])
  const grant = sealer.open<CodeGrant>('code', obtained.code)!
  const secrets = {
    'client secret': clientSecret,
    'gateway code': obtained.code,
    'upstream code': grant.uc,
    'client PKCE verifier': obtained.verifier,
    'gateway PKCE verifier': grant.v,
    'access token': tokens.access_token,
    'second access token': renewed.access_token,
    'refresh token': tokens.refresh_token,
    'upstream refresh token': upstreamRefresh,
    'rotated upstream refresh token': renewedUpstreamRefresh,
    'state sent by the client': obtained.state,
    'Basic credentials': auth.authorization.slice(6),
    'gateway secret': TEST_SECRET,
    'upstream client secret': stack.upstream.clientSecret,
  }
  const text = lines.join('\n')
  t.ok(text.length > 1000, 'the log was captured')
  for (const [name, value] of Object.entries(secrets)) t.notOk(text.includes(value), `no ${name} in the log`)
  t.notMatch(text, /__Host-|consent=|set-cookie":"[^[]/i, 'no cookie in the log')

  const metrics = await fetch(`${stack.gatewayUrl}/metrics`)
  t.equal(metrics.status, 200)
  t.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const body = await metrics.text()
  t.equal(sample(body, 'oauth_gateway_registrations_total', { preset: 'chatgpt' }), 1, 'the registration, by preset')
  t.equal(sample(body, 'oauth_gateway_flows_started_total', { preset: 'chatgpt' }), 1, 'the flow started, by preset')
  t.equal(sample(body, 'oauth_gateway_flows_completed_total', { preset: 'chatgpt' }), 1, 'the flow completed, by preset')
  t.equal(sample(body, 'oauth_gateway_http_requests_total', { route: '/token', method: 'POST', status: '200' }), 2, 'token requests by status')
  t.equal(sample(body, 'oauth_gateway_http_requests_total', { route: '/token', method: 'POST', status: '400' }), 1)
  t.equal(sample(body, 'oauth_gateway_http_request_duration_seconds_count', { route: '/register', method: 'POST', status: '201' }), 1, 'latency per endpoint')
  t.equal(sample(body, 'oauth_gateway_upstream_request_duration_seconds_count', { call: 'token (authorization_code)', outcome: 'ok' }), 1, 'upstream latency per call')
  t.equal(sample(body, 'oauth_gateway_upstream_request_duration_seconds_count', { call: 'token (refresh_token)', outcome: 'ok' }), 1, 'one refresh reached the upstream')
  t.equal(sample(body, 'oauth_gateway_upstream_request_duration_seconds_count', { call: 'token (refresh_token)', outcome: 'refused' }), 0, 'the refresh of the ended grant did not')
  t.equal(sample(body, 'oauth_gateway_upstream_request_duration_seconds_count', { call: 'revocation', outcome: 'ok' }), 1, 'the revocation did')
  t.equal(sample(body, 'oauth_gateway_grants_created_total', {}), 1, 'the grant created, counted')
  t.equal(sample(body, 'oauth_gateway_grants_ended_total', { reason: 'revoked_by_user' }), 1, 'and ended by the revocation')
  t.equal(sample(body, 'oauth_gateway_grants_ended_total', { reason: 'block' }), 0, 'every reason has a series')
  t.equal(sample(body, 'oauth_gateway_grants_active', {}), 0, 'no grant lives')
})

t.test('X-Request-Id: a plain caller id is kept, anything else is replaced', async (t) => {
  const kept = await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', headers: { 'x-request-id': 'lb-7f3a9c2e-0001' } })
  t.equal(kept.headers.get('x-request-id'), 'lb-7f3a9c2e-0001')
  const forged = await fetch(`${stack.gatewayUrl}/revoke`, { method: 'POST', headers: { 'x-request-id': 'x"}\\n{"level":60' } })
  t.match(forged.headers.get('x-request-id'), /^[A-Za-z0-9_-]{12}-[0-9a-z]+$/, 'a new id instead of one that could forge a log line')
  t.ok(parsed().some((line) => line.reqId === 'lb-7f3a9c2e-0001'), 'the kept id names the log lines')
  const unknown = await fetch(`${stack.gatewayUrl}/nowhere/${'x'.repeat(20)}`)
  t.equal(unknown.status, 404)
  const body = await (await fetch(`${stack.gatewayUrl}/metrics`)).text()
  t.ok(sample(body, 'oauth_gateway_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }) >= 1, 'unknown paths share one series')
  t.notMatch(body, /nowhere/, 'a client-chosen path never becomes a label')
})

t.test('one line per request; discovery documents, probes and /metrics only at debug, unless they fail', async (t) => {
  const id = (name: string) => ({ 'x-request-id': `quiet-${name}-0001` })
  await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`, { headers: id('metadata') })
  await fetch(`${stack.gatewayUrl}/.well-known/oauth-protected-resource/mcp`, { headers: id('resource') })
  await fetch(`${stack.gatewayUrl}/healthz`, { headers: id('health') })
  await fetch(`${stack.gatewayUrl}/metrics`, { headers: id('metrics') })
  const missing = await fetch(`${stack.gatewayUrl}/.well-known/oauth-protected-resource/elsewhere`, { headers: id('missing') })
  t.equal(missing.status, 404)
  const registered = await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { ...id('register'), 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' }) })
  t.equal(registered.status, 201)
  const linesOf = (name: string) => parsed().filter((line) => line.reqId === `quiet-${name}-0001`)
  for (const name of ['metadata', 'resource', 'health', 'metrics']) t.same(linesOf(name), [], `no ${name} line at info`)
  t.same(linesOf('missing').filter((line) => line.msg === 'request completed').map((line) => line.req?.path), ['/.well-known/oauth-protected-resource/elsewhere'], 'a failed one is logged')
  t.same(linesOf('register').filter((line) => line.msg === 'request completed').map((line) => line.req?.path), ['/register'], 'other requests: one line, when answered')
  t.notOk(parsed().some((line) => line.msg === 'incoming request'), 'no second line per request')
})

t.test('a quiet route names its request only when it fails, the only time it writes a line at info', async (t) => {
  const origin = { origin: 'https://inspector.example' }
  const document = await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`, { headers: origin })
  t.equal(document.status, 200)
  t.equal(document.headers.get('x-request-id'), null, 'a success carries no id')
  t.equal(document.headers.get('access-control-expose-headers'), null, 'nor a list of headers to expose')
  t.equal(document.headers.get('access-control-allow-origin'), '*', 'pages still read it')
  const missing = await fetch(`${stack.gatewayUrl}/.well-known/oauth-protected-resource/elsewhere`, { headers: { ...origin, 'x-request-id': 'quiet-failure-0001' } })
  t.equal(missing.status, 404)
  t.equal(missing.headers.get('x-request-id'), 'quiet-failure-0001', 'a failure carries its id')
  t.match(missing.headers.get('access-control-expose-headers'), /X-Request-Id/, 'which a page may read')
  t.ok(parsed().some((line) => line.reqId === 'quiet-failure-0001' && line.msg === 'request completed'), 'and it names the line logged')
  const other = await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { ...origin, 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' }) })
  t.equal(other.status, 201)
  t.match(other.headers.get('x-request-id'), /\S{8,}/, 'other routes name every answer')
  t.match(other.headers.get('access-control-expose-headers'), /X-Request-Id/)
})

t.test('/metrics asks for METRICS_TOKEN when it is set, and can be switched off', async (t) => {
  const guarded = await startStack({ env: { METRICS_TOKEN: 'scrape-token-0123456789' } })
  t.teardown(() => guarded.close())
  const refused = await failsWith(t, await fetch(`${guarded.gatewayUrl}/metrics`), 401, 'invalid_token')
  t.match(refused.error_description, /METRICS_TOKEN/)
  await failsWith(t, await fetch(`${guarded.gatewayUrl}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789x' } }), 401, 'invalid_token')
  const allowed = await fetch(`${guarded.gatewayUrl}/metrics`, { headers: { authorization: 'Bearer scrape-token-0123456789' } })
  t.equal(allowed.status, 200)
  t.match(await allowed.text(), /oauth_gateway_http_requests_total/)

  const off = await startStack({ config: (file) => ({ ...file, metrics: { enabled: false } }) })
  t.teardown(() => off.close())
  await failsWith(t, await fetch(`${off.gatewayUrl}/metrics`), 404, 'invalid_request')
})
