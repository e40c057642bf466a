/**
 * A failing upstream: a fault-injecting proxy sits between the gateway and
 * the real oidc-provider upstream, and breaks the upstream's token endpoint
 * in one way per test while a client exchanges a real gateway code. The
 * client always gets a JSON OAuth error within the upstream timeout plus one
 * second, the log tells what the upstream did (without tokens), and the next
 * exchange works.
 */
import t, { type Test } from 'tap'
import type { Fault } from '../support/fault-proxy.ts'
import { gatewayCode, registerClient, tokenRequest } from '../support/gateway-flow.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const TIMEOUT_MS = 1000
const logs: Array<Record<string, any>> = []
const stack = await startStack({
  faultProxy: true,
  config: (file) => ({ ...file, upstream: { ...file.upstream, timeoutMs: TIMEOUT_MS, connectTimeoutMs: 500 } }),
  logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } },
})
t.teardown(() => stack.close())
const proxy = stack.proxy!
const client = await registerClient(stack.gatewayUrl, { client_name: 'fault test', redirect_uris: [CHATGPT_REDIRECT] })

/** A real gateway code, then the exchange with the upstream misbehaving as `fault` says. */
async function exchangeUnder(fault: Fault | 'refuse', options: { trickleMs?: number } = {}) {
  const { code, verifier, redirectUri } = await gatewayCode(stack.gatewayUrl, client, stack.upstream.account)
  logs.length = 0
  if (fault === 'refuse') await proxy.refuse()
  else proxy.inject(fault, options)
  const started = performance.now()
  try {
    const response = await tokenRequest(stack.gatewayUrl, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri, client_id: client.client_id })
    const body = (await response.json()) as { error?: string; error_description?: string }
    return { response, body, elapsed: performance.now() - started, logged: logs.find((entry) => entry.upstream?.call === 'token (authorization_code)') }
  } finally {
    if (fault === 'refuse') await proxy.accept()
    else proxy.inject('none')
  }
}

/** The next client is served: a fresh code is exchanged for the upstream's tokens. */
async function servesTheNextExchange(t: Test) {
  const { code, verifier, redirectUri } = await gatewayCode(stack.gatewayUrl, client, stack.upstream.account)
  const response = await tokenRequest(stack.gatewayUrl, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri, client_id: client.client_id })
  const tokens = (await response.json()) as { access_token?: string }
  t.equal(response.status, 200, 'the next exchange succeeds')
  t.ok(tokens.access_token, 'with an access token')
}

interface Case {
  name: string
  fault: Fault | 'refuse'
  trickleMs?: number
  status: number
  error: string
  /** What the log says about the upstream's answer. */
  upstream?: Record<string, unknown>
}

const CASES: Case[] = [
  { name: 'connection refused', fault: 'refuse', status: 503, error: 'temporarily_unavailable' },
  { name: 'no answer', fault: 'no-answer', status: 504, error: 'temporarily_unavailable' },
  { name: 'an HTML page with status 500', fault: 'html-500', status: 502, error: 'server_error', upstream: { status: 500, contentType: 'text/html; charset=utf-8', excerpt: /Internal Server Error/ } },
  { name: 'a maintenance page with status 503', fault: 'html-503', status: 503, error: 'temporarily_unavailable', upstream: { status: 503, contentType: 'text/html', excerpt: /Temporarily Unavailable/ } },
  { name: 'invalid JSON', fault: 'invalid-json', status: 502, error: 'server_error', upstream: { status: 200, contentType: 'application/json' } },
  { name: 'truncated JSON (the connection closes before Content-Length is reached)', fault: 'truncated-json', status: 502, error: 'server_error', upstream: { status: 200 } },
  { name: 'a connection reset mid-body', fault: 'reset-mid-body', status: 502, error: 'server_error', upstream: { status: 200 } },
  { name: 'a body that trickles one byte a second', fault: 'trickle', trickleMs: 1000, status: 504, error: 'temporarily_unavailable', upstream: { status: 200 } },
  // undici's bodyTimeout is an idle timer: a byte every 200 ms keeps it quiet, the deadline does not.
  { name: 'a body that trickles one byte every 200 ms', fault: 'trickle', trickleMs: 200, status: 504, error: 'temporarily_unavailable', upstream: { status: 200 } },
  { name: 'a streamed body larger than the cap', fault: 'oversized', status: 502, error: 'server_error', upstream: { status: 200 } },
  { name: 'a body declaring more than the cap', fault: 'oversized-declared', status: 502, error: 'server_error', upstream: { status: 200, bytes: 64 * 1024 * 1024 } },
  { name: 'a JSON error without an error member', fault: 'json-without-error', status: 502, error: 'server_error', upstream: { status: 400, excerpt: /Bad Request/ } },
  { name: 'a real OAuth error, which passes through', fault: 'oauth-error', status: 400, error: 'invalid_grant', upstream: { status: 400 } },
]

for (const fault of CASES) {
  t.test(fault.name, async (t) => {
    const { response, body, elapsed, logged } = await exchangeUnder(fault.fault, { trickleMs: fault.trickleMs })
    t.equal(response.status, fault.status, `answered ${fault.status}`)
    t.equal(body.error, fault.error, `error ${fault.error}`)
    t.type(body.error_description, 'string', 'with a description')
    t.match(response.headers.get('content-type'), /^application\/json/, 'as JSON')
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.ok(elapsed < TIMEOUT_MS + 1000, `within the upstream timeout plus one second (${Math.round(elapsed)} ms)`)
    t.ok(logged, 'the upstream call is logged')
    t.equal(logged?.status, fault.status, 'with the answer given to the client')
    if (fault.upstream) t.match(logged?.upstream, fault.upstream, 'and what the upstream answered')
    t.notMatch(JSON.stringify(logs), /"excerpt":"[^"]*[A-Za-z0-9\-._~+/]{20,}/, 'no token-like value in the log')
    await servesTheNextExchange(t)
  })
}

t.test('the gateway stops reading an oversized body at the cap', async (t) => {
  const { response } = await exchangeUnder('oversized')
  t.equal(response.status, 502)
  // The proxy writes as fast as the gateway reads; socket buffers hold a few MiB at most.
  t.ok(proxy.bytesSent < 16 * 1024 * 1024, `the upstream got to send ${proxy.bytesSent} of 64 MiB`)
})

t.test('a token answer cut in half reaches the log only as a redacted excerpt', async (t) => {
  const { response, logged } = await exchangeUnder('truncated-json')
  t.equal(response.status, 502)
  t.match(logged?.upstream.excerpt, /\[redacted\]/, 'the half token in the excerpt is redacted')
})
