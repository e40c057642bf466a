/**
 * End to end: rate limits on registration, authorization and token, per
 * client address and per client id. Excess requests get 429 in the OAuth
 * error shape with Retry-After (JSON on the back channel, the page on
 * /authorize); X-Forwarded-For counts only behind a trusted proxy; replicas
 * on one Redis share their counters.
 */
import t, { type Test } from 'tap'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisStore } from '../../gateway/state/redis-store.ts'
import { pkcePair, postForm, postJson, registerClient } from '../support/flow.ts'
import { capturedLog } from '../support/log-capture.ts'
import { deletePrefix, randomPrefix, SHARED_REDIS_URL } from '../support/redis.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, type StackOptions } from '../support/stack.ts'

const LIMITS = {
  register: { perIp: { max: 2, windowSeconds: 60 } },
  authorize: { perIp: { max: 2, windowSeconds: 60 }, perClient: { max: 100, windowSeconds: 60 } },
  token: { perIp: { max: 3, windowSeconds: 60 }, perClient: { max: 2, windowSeconds: 60 } },
}

async function limitedStack(t: Test, server: Record<string, unknown> = {}, options: StackOptions = {}, limits: Record<string, unknown> = LIMITS) {
  const stack = await startStack({ ...options, config: (file) => ({ ...file, limits, server }) })
  t.teardown(() => stack.close())
  return stack
}

const FORWARDED_WARNING = /X-Forwarded-For but server\.trustProxy is 0.*set TRUST_PROXY/

const registration = { client_name: 'ChatGPT', redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] }

/** A token request that counts whatever its outcome: the limit is checked before the code is. */
function tokenRequest(gatewayUrl: string, clientId: string, from?: string) {
  return postForm(`${gatewayUrl}/token`, { grant_type: 'authorization_code', code: 'not-a-code', code_verifier: pkcePair().verifier, client_id: clientId }, from ? { 'x-forwarded-for': from } : {})
}

t.test('registration: 429 temporarily_unavailable with Retry-After once an address has used its limit', async (t) => {
  const stack = await limitedStack(t)
  for (let i = 0; i < 2; i++) t.equal((await postJson(`${stack.gatewayUrl}/register`, registration)).status, 201)
  const refused = await postJson(`${stack.gatewayUrl}/register`, registration)
  const body = await failsWith(t, refused, 429, 'temporarily_unavailable')
  t.match(body.error_description, /^too many requests from this address \(limits\.register\.perIp\): at most 2 every 60 s; retry after \d+ s$/)
  const retryAfter = Number(refused.headers.get('retry-after'))
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds (${retryAfter})`)
  t.equal(refused.headers.get('access-control-allow-origin'), '*', 'a browser client can read the refusal')
  t.match(refused.headers.get('access-control-expose-headers'), /Retry-After/)
})

t.test('authorization: the refusal is a page with status 429 and Retry-After, never a redirect', async (t) => {
  const stack = await limitedStack(t)
  const client = await registerClient(stack)
  const url = new URL(`${stack.gatewayUrl}/authorize`)
  url.search = new URLSearchParams({ response_type: 'code', client_id: client.client_id, redirect_uri: CHATGPT_REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 's' }).toString()
  for (let i = 0; i < 2; i++) t.equal((await fetch(url, { redirect: 'manual' })).status, 200, 'the consent page')
  const refused = await fetch(url, { redirect: 'manual' })
  t.equal(refused.status, 429)
  t.match(refused.headers.get('content-type'), /^text\/html/)
  t.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After')
  t.equal(refused.headers.get('location'), null)
  t.match(await refused.text(), /Wait \d+ seconds[\s\S]*temporarily_unavailable/)
})

t.test('token: per client id across addresses, and per address across clients, behind one trusted proxy', async (t) => {
  const log = capturedLog()
  const stack = await limitedStack(t, { trustProxy: 1 }, { logger: log.logger }, { ...LIMITS, register: { perIp: { max: 10 } } })
  const [first, second, third] = [await registerClient(stack), await registerClient(stack), await registerClient(stack)]
  t.equal((await tokenRequest(stack.gatewayUrl, first.client_id, '198.51.100.1')).status, 400, 'counted, then refused for its code')
  t.equal((await tokenRequest(stack.gatewayUrl, first.client_id, '198.51.100.2')).status, 400)
  const perClient = await failsWith(t, await tokenRequest(stack.gatewayUrl, first.client_id, '198.51.100.3'), 429, 'temporarily_unavailable')
  t.match(perClient.error_description, /from this client \(limits\.token\.perClient\): at most 2 every 60 s/, 'the client limit holds whatever the address')
  t.equal((await tokenRequest(stack.gatewayUrl, second.client_id, '198.51.100.3')).status, 400, 'another client from that address still passes')

  for (const client of [second, third]) t.equal((await tokenRequest(stack.gatewayUrl, client.client_id, '203.0.113.9')).status, 400)
  t.equal((await tokenRequest(stack.gatewayUrl, third.client_id, '203.0.113.9')).status, 400)
  const perAddress = await failsWith(t, await tokenRequest(stack.gatewayUrl, first.client_id + 'x', '203.0.113.9'), 429, 'temporarily_unavailable')
  t.match(perAddress.error_description, /from this address \(limits\.token\.perIp\): at most 3 every 60 s/)
  t.notOk(log.parsed().some((line) => FORWARDED_WARNING.test(line.msg)), 'no warning about X-Forwarded-For: the proxy is trusted')
})

t.test('without a trusted proxy, X-Forwarded-For is ignored: a client cannot pick a fresh address per request; the log says so once', async (t) => {
  const log = capturedLog()
  const stack = await limitedStack(t, {}, { logger: log.logger })
  for (let i = 0; i < 2; i++) t.equal((await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': `192.0.2.${i}` }, body: JSON.stringify(registration) })).status, 201)
  const spoofed = await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '192.0.2.99' }, body: JSON.stringify(registration) })
  await failsWith(t, spoofed, 429, 'temporarily_unavailable')
  const warnings = log.parsed().filter((line) => FORWARDED_WARNING.test(line.msg))
  t.equal(warnings.length, 1, 'one warning, not one per request')
  t.equal(warnings[0]?.level, 40, 'at warn')
  t.equal(warnings[0]?.peer, '127.0.0.1', 'naming the address every client is counted as')
})

t.test('limits switched off, or one rule at max 0, let everything through', async (t) => {
  const off = await startStack({ config: (file) => ({ ...file, limits: { ...LIMITS, enabled: false } }) })
  t.teardown(() => off.close())
  for (let i = 0; i < 4; i++) t.equal((await postJson(`${off.gatewayUrl}/register`, registration)).status, 201)
  const zero = await startStack({ config: (file) => ({ ...file, limits: { ...LIMITS, register: { perIp: { max: 0 } } } }) })
  t.teardown(() => zero.close())
  for (let i = 0; i < 4; i++) t.equal((await postJson(`${zero.gatewayUrl}/register`, registration)).status, 201)
})

t.test('two replicas on one Redis share their counters', async (t) => {
  const keyPrefix = randomPrefix()
  t.teardown(() => deletePrefix(keyPrefix))
  const replica = async () => {
    const redis = createRedisClient({ connection: { mode: 'single', url: SHARED_REDIS_URL, tls: false }, keyPrefix, commandTimeoutMs: 1000 })
    connectRedis(redis, { info() {}, warn() {} })
    await new Promise((resolve) => redis.once('ready', resolve))
    return limitedStack(t, {}, { redis, store: new RedisStore(redis) })
  }
  const [a, b] = [await replica(), await replica()]
  t.equal((await postJson(`${a.gatewayUrl}/register`, registration)).status, 201)
  t.equal((await postJson(`${b.gatewayUrl}/register`, registration)).status, 201)
  await failsWith(t, await postJson(`${a.gatewayUrl}/register`, registration), 429, 'temporarily_unavailable')
  await failsWith(t, await postJson(`${b.gatewayUrl}/register`, registration), 429, 'temporarily_unavailable')
})
