/**
 * End to end: rate limits that fit shared egress. Hosted clients register and
 * redeem codes from a few server addresses for all their users, so ops name
 * those ranges (`limits.trustedRanges`, IPv4 and IPv6), whose addresses count
 * against `perTrustedIp` instead of `perIp`; every registration and token
 * request also counts against its client family (the redirect URI preset) and
 * a global ceiling, narrowest first: a request refused by one limit is not
 * counted by the broader ones. A metadata document's client id, one for all
 * its vendor's users, has no per-client limit. Each refusal names the limit that stopped it. The client
 * address comes from X-Forwarded-For behind one trusted proxy, as in
 * production behind the load balancer.
 */
import t, { type Test } from 'tap'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, postForm, type RegisteredClient } from '../support/flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack } from '../support/stack.ts'

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'
const TRUSTED = ['203.0.113.0/24', '2001:db8::/32']

async function limitedStack(t: Test, limits: Record<string, unknown>) {
  const stack = await startStack({ config: (file) => ({ ...file, server: { trustProxy: 1 }, limits: { trustedRanges: TRUSTED, ...limits } }) })
  t.teardown(() => stack.close())
  return stack
}

function register(gatewayUrl: string, from: string, redirectUri = CHATGPT_REDIRECT) {
  return fetch(`${gatewayUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': from },
    body: JSON.stringify({ client_name: 'ChatGPT', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
  })
}

/** A token request that counts whatever its outcome: the limits are checked before the code is. */
function tokenRequest(gatewayUrl: string, clientId: string, from: string) {
  return postForm(`${gatewayUrl}/token`, { grant_type: 'authorization_code', code: 'not-a-code', code_verifier: pkcePair().verifier, client_id: clientId }, { 'x-forwarded-for': from })
}

/** `count` requests, `batch` at a time; their statuses. */
async function statuses(count: number, send: (i: number) => Promise<Response>, batch = 25): Promise<number[]> {
  const all: number[] = []
  for (let i = 0; i < count; i += batch) {
    const answers = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => send(i + j)))
    for (const answer of answers) {
      all.push(answer.status)
      await answer.body?.cancel()
    }
  }
  return all
}

const limited = (t: Test, description: string, who: string, path: string, max: number) =>
  t.match(description, new RegExp(`^too many requests from ${who.replace(/[()]/g, '\\$&')} \\(${path.replace(/\./g, '\\.')}\\): at most ${max} every 60 s; retry after \\d+ s$`))

t.test('500 registrations from one address in a trusted range pass; from an untrusted address they are limited', async (t) => {
  const stack = await limitedStack(t, { register: { perIp: { max: 20 }, perTrustedIp: { max: 600 }, perFamily: { max: 5000 }, global: { max: 5000 } } })
  const trusted = await statuses(500, () => register(stack.gatewayUrl, '203.0.113.7'))
  t.same([...new Set(trusted)], [201], 'all 500 from 203.0.113.7 registered')

  const untrusted = await statuses(21, () => register(stack.gatewayUrl, '198.51.100.7'), 1)
  t.same(untrusted.slice(0, 20), Array(20).fill(201), 'the untrusted address gets its 20')
  t.equal(untrusted[20], 429, 'and no more')
  const refused = await failsWith(t, await register(stack.gatewayUrl, '198.51.100.7'), 429, 'temporarily_unavailable')
  limited(t, refused.error_description!, 'this address', 'limits.register.perIp', 20)

  const v6 = await statuses(40, () => register(stack.gatewayUrl, '2001:db8:1::42'))
  t.same([...new Set(v6)], [201], 'an IPv6 address in a trusted range passes beyond perIp too')
  t.equal((await register(stack.gatewayUrl, '203.0.114.1')).status, 201, 'a neighbour outside the range counts on its own perIp')
})

t.test('the trusted per-address limit holds too, and says so', async (t) => {
  const stack = await limitedStack(t, { register: { perIp: { max: 2 }, perTrustedIp: { max: 5 } } })
  t.same(await statuses(5, () => register(stack.gatewayUrl, '203.0.113.8'), 1), Array(5).fill(201))
  const refused = await failsWith(t, await register(stack.gatewayUrl, '203.0.113.8'), 429, 'temporarily_unavailable')
  limited(t, refused.error_description!, 'this trusted address', 'limits.register.perTrustedIp', 5)
  t.equal((await register(stack.gatewayUrl, '203.0.113.9')).status, 201, 'another address of the range has its own count')
})

t.test('a family limit counts a preset\'s registrations from every address; other families pass', async (t) => {
  const stack = await limitedStack(t, { register: { perFamily: { max: 5 } } })
  t.same(await statuses(5, (i) => register(stack.gatewayUrl, `198.51.100.${i + 1}`), 1), Array(5).fill(201))
  const refused = await failsWith(t, await register(stack.gatewayUrl, '198.51.100.99'), 429, 'temporarily_unavailable')
  limited(t, refused.error_description!, 'clients of the chatgpt family', 'limits.register.perFamily', 5)
  t.equal((await register(stack.gatewayUrl, '198.51.100.99', CLAUDE_REDIRECT)).status, 201, 'the claude family is counted apart')
})

t.test('the global ceiling holds whatever the address, range or family', async (t) => {
  const stack = await limitedStack(t, { register: { global: { max: 8 } } })
  const sent = await statuses(8, (i) => register(stack.gatewayUrl, i % 2 ? `203.0.113.${i}` : `198.51.100.${i}`, i % 3 ? CHATGPT_REDIRECT : CLAUDE_REDIRECT), 1)
  t.same(sent, Array(8).fill(201))
  for (const from of ['203.0.113.200', '2001:db8::9', '192.0.2.50']) {
    const refused = await failsWith(t, await register(stack.gatewayUrl, from, CLAUDE_REDIRECT), 429, 'temporarily_unavailable')
    limited(t, refused.error_description!, 'all clients together', 'limits.register.global', 8)
  }
})

t.test('an address over its own limit does not use up its family\'s or the global limit; a family over its limit does not use up the global one', async (t) => {
  const stack = await limitedStack(t, { register: { perIp: { max: 2 }, perFamily: { max: 5 }, global: { max: 7 } } })
  const flood = await statuses(30, () => register(stack.gatewayUrl, '198.51.100.66'))
  t.same([flood.filter((status) => status === 201).length, flood.filter((status) => status === 429).length], [2, 28], 'one untrusted address gets its 2, then 429')
  t.same(await statuses(3, (i) => register(stack.gatewayUrl, `198.51.100.${i + 1}`), 1), [201, 201, 201], 'the chatgpt family still has room for real registrations: 2 + 3 = 5')
  const family = await failsWith(t, await register(stack.gatewayUrl, '198.51.100.4'), 429, 'temporarily_unavailable')
  limited(t, family.error_description!, 'clients of the chatgpt family', 'limits.register.perFamily', 5)
  t.same(await statuses(2, (i) => register(stack.gatewayUrl, `198.51.100.${i + 5}`, CLAUDE_REDIRECT), 1), [201, 201], 'the global ceiling counted 5 so far, not the refused ones: 2 more')
  const ceiling = await failsWith(t, await register(stack.gatewayUrl, '198.51.100.7', CLAUDE_REDIRECT), 429, 'temporarily_unavailable')
  limited(t, ceiling.error_description!, 'all clients together', 'limits.register.global', 7)
})

t.test('/token: trusted addresses, the family of the client asking, and the ceiling', async (t) => {
  const stack = await limitedStack(t, {
    register: { perIp: { max: 100 } },
    token: { perIp: { max: 3 }, perTrustedIp: { max: 100 }, perClient: { max: 100 }, perFamily: { max: 30 }, global: { max: 45 } },
  })
  const clientOf = async (redirectUri: string, from: string) => ((await (await register(stack.gatewayUrl, from, redirectUri)).json()) as RegisteredClient).client_id
  const chatgpt = await clientOf(CHATGPT_REDIRECT, '198.51.100.1')
  const claude = await clientOf(CLAUDE_REDIRECT, '198.51.100.1')

  t.same([...new Set(await statuses(20, () => tokenRequest(stack.gatewayUrl, chatgpt, '203.0.113.7')))], [400], 'a trusted address passes the limits (then the code is refused)')
  t.same(await statuses(3, () => tokenRequest(stack.gatewayUrl, claude, '198.51.100.50'), 1), [400, 400, 400])
  const perIp = await failsWith(t, await tokenRequest(stack.gatewayUrl, claude, '198.51.100.50'), 429, 'temporarily_unavailable')
  limited(t, perIp.error_description!, 'this address', 'limits.token.perIp', 3)

  // The ceiling has counted 23: the request refused for its address is not among them.
  t.same([...new Set(await statuses(10, () => tokenRequest(stack.gatewayUrl, chatgpt, '2001:db8::7')))], [400], 'the chatgpt family reaches 30')
  const family = await failsWith(t, await tokenRequest(stack.gatewayUrl, chatgpt, '203.0.113.8'), 429, 'temporarily_unavailable')
  limited(t, family.error_description!, 'clients of the chatgpt family', 'limits.token.perFamily', 30)

  // 33, the family's refusal not among them: 12 more reach 45.
  t.same([...new Set(await statuses(12, () => tokenRequest(stack.gatewayUrl, claude, '203.0.113.9'), 1))], [400], 'claude clients are counted apart, up to the ceiling')
  const ceiling = await failsWith(t, await tokenRequest(stack.gatewayUrl, claude, '203.0.113.9'), 429, 'temporarily_unavailable')
  limited(t, ceiling.error_description!, 'all clients together', 'limits.token.global', 45)
})

t.test('a metadata document\'s client id (one for all its vendor\'s users) has no per-client limit; a registered client keeps its own', async (t) => {
  const site = await startClientSite()
  t.teardown(() => site.close())
  const stack = await startStack({
    config: (file) => ({
      ...file,
      server: { trustProxy: 1 },
      clientMetadataDocuments: { developmentAllowLoopback: true },
      limits: { authorize: { perClient: { max: 2 } }, token: { perClient: { max: 2 } } },
    }),
  })
  t.teardown(() => stack.close())
  const redirectUri = `${site.url}/callback`
  const clientId = `${site.url}/oauth/client.json`
  site.json('/oauth/client.json', { client_id: clientId, client_name: 'Hosted Client', redirect_uris: [redirectUri] }, { 'cache-control': 'max-age=300' })
  const documented: RegisteredClient = { client_id: clientId, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: [] }

  t.same(await statuses(6, (i) => tokenRequest(stack.gatewayUrl, clientId, `198.51.100.${i + 1}`), 1), Array(6).fill(400), '/token: six users of the document pass the limits (then the code is refused)')
  const pages = await statuses(6, (i) => fetch(authorizeUrl(stack, documented, pkcePair().challenge, { redirect_uri: redirectUri }), { redirect: 'manual', headers: { 'x-forwarded-for': `198.51.100.${i + 1}` } }), 1)
  t.same(pages, Array(6).fill(200), '/authorize: six users of the document get the consent page')

  const registered = ((await (await register(stack.gatewayUrl, '198.51.100.99')).json()) as RegisteredClient).client_id
  t.same(await statuses(2, (i) => tokenRequest(stack.gatewayUrl, registered, `198.51.100.${i + 1}`), 1), [400, 400])
  const perClient = await failsWith(t, await tokenRequest(stack.gatewayUrl, registered, '198.51.100.3'), 429, 'temporarily_unavailable')
  limited(t, perClient.error_description!, 'this client', 'limits.token.perClient', 2)
})
