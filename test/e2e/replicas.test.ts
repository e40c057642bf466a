/**
 * Three gateway processes sharing one Redis behind one public URL (a load
 * balancer without sticky sessions), in front of the real oidc-provider
 * upstream: any replica finishes any step of a flow, a code or sign-in used on one is refused on every other, a refresh
 * raced on two replicas gets an answer on both, and a restart of every
 * replica loses no registration, sign-in in progress or single-use mark.
 */
import t from 'tap'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { deletePrefix, keysWithTtl, rawClient, SHARED_REDIS_URL } from '../support/redis.ts'
import { arriveAt, authorizeAndSignIn, codeFrom, completeFlow, isActive, redeem, refresh, register, startCluster, type Replica } from '../support/replicas.ts'
import { CHATGPT_REDIRECT, failsWith, pastRetryWindow } from '../support/stack.ts'

// A short retry window, so the test also sees a code refused once the window has passed,
// yet long enough for the repeats within it to land there on a loaded machine.
const CODE_RETRY_SECONDS = 3
const cluster = await startCluster({ replicas: 3, redisUrl: SHARED_REDIS_URL, config: (file) => ({ ...file, lifetimes: { codeRetrySeconds: CODE_RETRY_SECONDS } }) })
t.teardown(async () => {
  await cluster.close()
  await deletePrefix(cluster.keyPrefix)
})
const [a, b, c] = cluster.replicas as [Replica, Replica, Replica]

interface Tokens {
  access_token: string
  refresh_token: string
}

t.test('a flow whose steps hit different replicas ends in a working token', async (t) => {
  const client = await register(a)
  // The browser's /authorize lands on B, its consent answer on C, its return from the upstream on C.
  const signedIn = await authorizeAndSignIn(cluster, b, client, c)
  t.equal(signedIn.callback.origin + signedIn.callback.pathname, `${cluster.publicUrl}/callback`, 'the upstream sends the browser to the public URL')
  const callback = await arriveAt(c, signedIn.callback)
  const location = new URL(callback.headers.get('location')!)
  t.equal(location.origin + location.pathname, CHATGPT_REDIRECT, 'replica C sends the browser back to ChatGPT')
  t.equal(location.searchParams.get('state'), signedIn.state)
  t.equal(location.searchParams.get('iss'), cluster.publicUrl, 'every replica is the same issuer')

  const response = await redeem(a, client, codeFrom(callback), signedIn)
  t.equal(response.status, 200, 'replica A redeems the code that C issued')
  const tokens = (await response.json()) as Tokens

  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  provider.saved = { ...tokens, token_type: 'Bearer' }
  const connected = mcpClient()
  await connected.connect(transportFor(cluster.mcp.url, provider))
  t.equal(textOf(await connected.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001', 'the MCP server accepts the token')
  await connected.close()

  const refreshed = await refresh(b, client, tokens.refresh_token)
  t.equal(refreshed.status, 200, 'replica B refreshes with the refresh token A sealed')
  t.ok(await isActive(cluster, ((await refreshed.json()) as Tokens).access_token), 'the refreshed access token works')
})

t.test('a code or a sign-in used on one replica is refused on every other', async (t) => {
  const client = await register(c)
  const signedIn = await authorizeAndSignIn(cluster, a, client)
  const callback = await arriveAt(b, signedIn.callback)
  const code = codeFrom(callback)

  const replayedCallback = await arriveAt(c, signedIn.callback)
  t.equal(replayedCallback.status, 400, 'the same sign-in arriving at another replica is refused')
  t.match(replayedCallback.headers.get('content-type'), /^text\/html/, 'as a page, not a redirect')
  t.match(await replayedCallback.text(), /already completed/)

  const first = await redeem(a, client, code, signedIn)
  const answeredAt = Date.now()
  t.equal(first.status, 200, 'first redemption on A')
  const tokens = (await first.json()) as Tokens
  // ChatGPT repeats its token POST: the same request on any replica within the retry window gets the same answer.
  for (const replica of [b, c]) {
    const repeat = await redeem(replica, client, code, signedIn)
    t.equal(repeat.status, 200, `a repeat on ${replica === b ? 'B' : 'C'} within the window`)
    t.equal(((await repeat.json()) as Tokens).access_token, tokens.access_token, 'gets the answer A gave, shared through Redis')
  }
  await pastRetryWindow(answeredAt, CODE_RETRY_SECONDS)
  for (const replica of [b, c, a]) {
    const body = await failsWith(t, await redeem(replica, client, code, signedIn), 400, 'invalid_grant')
    // The gateway's own shared mark refuses it, before the upstream would be asked.
    t.match(body.error_description, /^code: was already used/, `replayed on ${replica === a ? 'A' : replica === b ? 'B' : 'C'} after the window`)
  }
  t.ok(await isActive(cluster, tokens.access_token), 'the replays revoked nothing that was legitimately issued')

  const raw = rawClient()
  t.teardown(() => raw.disconnect())
  const keys = await keysWithTtl(raw, cluster.keyPrefix)
  t.ok(keys.size > 0, 'the marks are in Redis under the configured prefix')
  // Grants are durable (they end by revocation, block or purge, not by a TTL); every short-lived mark expires.
  const durable = [...keys.keys()].filter((key) => key.startsWith(`${cluster.keyPrefix}{grants}:`))
  t.ok(durable.some((key) => key.includes(':grant:')), 'the grant is in Redis, shared')
  t.ok([...keys].filter(([key]) => !durable.includes(key)).every(([, ttl]) => ttl > 0), 'every short-lived key has a TTL')
})

t.test('a refresh raced on two replicas: one upstream call, both get the same new tokens, nothing is revoked', async (t) => {
  const client = await register(a)
  const tokens = (await (await completeFlow(cluster, client, { authorize: a, callback: b, token: c })).json()) as Tokens

  const responses = await Promise.all([refresh(a, client, tokens.refresh_token), refresh(b, client, tokens.refresh_token)])
  const bodies = (await Promise.all(responses.map((response) => response.json()))) as Tokens[]
  t.same(responses.map((response) => response.status), [200, 200], 'both replicas answer with tokens')
  t.equal(bodies[0]!.access_token, bodies[1]!.access_token, 'the same answer: the refresh ran once, across replicas (single flight through Redis)')
  t.not(bodies[0]!.access_token, tokens.access_token, 'a new access token')

  // Had both replicas gone to the rotating upstream, the second use of the refresh token would have
  // revoked the whole grant (OAuth 2.1 §4.3.1). The new tokens live, and the new refresh token works.
  t.ok(await isActive(cluster, bodies[0]!.access_token), 'the new access token is active')
  t.equal((await refresh(c, client, bodies[0]!.refresh_token)).status, 200, 'and the new refresh token works on a third replica')
})

t.test('a restart of every replica between registration and authorization loses nothing', async (t) => {
  const client = await register(a)
  const early = await register(b)
  const inProgress = await authorizeAndSignIn(cluster, c, early)
  const redeemed = await authorizeAndSignIn(cluster, a, early)
  const redeemedCode = codeFrom(await arriveAt(a, redeemed.callback))
  t.equal((await redeem(b, early, redeemedCode, redeemed)).status, 200)
  const redeemedAt = Date.now()

  const [d, e] = (await cluster.restart(2)) as [Replica, Replica]
  t.not(d.url, a.url, 'new processes on new ports')

  const response = await completeFlow(cluster, client, { authorize: d, callback: e, token: d })
  t.equal(response.status, 200, 'a client registered before the restart signs in after it')
  const code = codeFrom(await arriveAt(e, inProgress.callback))
  t.equal((await redeem(d, early, code, inProgress)).status, 200, 'a sign-in started before the restart completes after it')
  await pastRetryWindow(redeemedAt, CODE_RETRY_SECONDS)
  const replay = await failsWith(t, await redeem(e, early, redeemedCode, redeemed), 400, 'invalid_grant')
  t.match(replay.error_description, /^code: was already used/, 'a code redeemed before the restart stays used')
  t.equal((await arriveAt(d, redeemed.callback)).status, 400, 'a sign-in completed before the restart cannot be completed again')
})
