/**
 * Redis goes away under two running replicas (a private redis-server, so
 * 127.0.0.1:6379 is left alone): requests that need it are answered 503
 * `temporarily_unavailable` at once, JSON on the token endpoint and a page in
 * the browser; readiness says no. Redis comes back (empty, as a Redis without
 * persistence does) and the replicas recover by themselves with nothing
 * corrupted: a code issued before the outage is redeemed once, and a sign-in
 * interrupted by the outage completes. A master demoted to a replica under
 * the connection makes the replica not ready until it is master again.
 */
import t from 'tap'
import { BLOCKS_REFRESH_MS } from '../../gateway/grants/registry.ts'
import { ask, startPrivateRedis } from '../support/redis.ts'
import { arriveAt, authorizeAndSignIn, codeFrom, isActive, redeem, register, registration, startCluster, type Replica } from '../support/replicas.ts'
import { failsWith } from '../support/stack.ts'

const COMMAND_TIMEOUT_MS = 300

async function readiness(replica: Replica) {
  const response = await fetch(`${replica.url}/readyz`)
  return { status: response.status, body: (await response.json()) as { status: string; reason?: string } }
}

async function untilReady(replica: Replica, within = 15_000) {
  const deadline = Date.now() + within
  while ((await readiness(replica)).status !== 200) {
    if (Date.now() > deadline) throw new Error(`${replica.url} did not become ready again`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('Redis stopped mid-run: 503 at once; restarted: the replicas recover and nothing is corrupted', async (t) => {
  const redis = await startPrivateRedis(t)
  const cluster = await startCluster({ replicas: 2, redisUrl: redis.url, config: (file) => ({ ...file, redis: { ...file.redis, commandTimeoutMs: COMMAND_TIMEOUT_MS } }) })
  t.teardown(() => cluster.close())
  const [a, b] = cluster.replicas as [Replica, Replica]
  const client = await register(a)

  // Before the outage: one code redeemed, one issued and not yet redeemed, one sign-in on its way back.
  const redeemed = await authorizeAndSignIn(cluster, a, client)
  const redeemedCode = codeFrom(await arriveAt(b, redeemed.callback))
  const redeemedResponse = await redeem(a, client, redeemedCode, redeemed)
  t.equal(redeemedResponse.status, 200)
  const redeemedTokens = (await redeemedResponse.json()) as { access_token: string }
  const pending = await authorizeAndSignIn(cluster, b, client)
  const pendingCode = codeFrom(await arriveAt(a, pending.callback))
  const interrupted = await authorizeAndSignIn(cluster, a, client)

  await t.test('Redis answers nothing (paused): a request gives up after redis.commandTimeoutMs', async (t) => {
    const throwaway = await authorizeAndSignIn(cluster, a, client)
    const code = codeFrom(await arriveAt(a, throwaway.callback))
    const paused = Date.now()
    redis.pause()
    // Redis is resumed only once the answer is here: a gateway that waited for Redis would never answer.
    await failsWith(t, await redeem(b, client, code, throwaway), 503, 'temporarily_unavailable')
    const failed = await b.waitForLog((line) => line.msg === 'request failed' && line.endpoint === '/token' && line.time >= paused)
    // A command timeout, or the connection dropped by the socket timeout when the rate limit counters waited first.
    t.match(failed.err?.message, /^Redis: /, 'the replica gave up on the paused Redis')
    redis.resume()
    await untilReady(a)
    await untilReady(b)
  })

  // Marked before the stop: a replica may notice the outage before this process sees redis-server exit.
  const outage = Date.now()
  const since = (match: (line: Record<string, any>) => boolean) => (line: Record<string, any>) => line.time >= outage && match(line)
  await redis.stop()
  const stopped = Date.now()

  const during = await redeem(b, client, pendingCode, pending)
  const body = await failsWith(t, during, 503, 'temporarily_unavailable')
  t.match(body.error_description, /state store is unavailable/)
  const failed = await b.waitForLog(since((line) => line.msg === 'request failed' && line.endpoint === '/token'))
  t.match(failed.err?.message, /^Redis: /, 'refused because Redis is down')
  t.notMatch(failed.err?.message, /timed out/, 'at once, without waiting for Redis to answer')

  const page = await arriveAt(b, interrupted.callback)
  t.equal(page.status, 503, 'the browser arriving at /callback gets a 503')
  t.match(page.headers.get('content-type'), /^text\/html/, 'as the error page')
  t.match(await page.text(), /temporarily_unavailable/)

  await t.rejects(authorizeAndSignIn(cluster, a, client), /did not come back to the gateway: 503/, 'answering the consent page needs the store: a 503 page')
  t.same(await readiness(a), { status: 503, body: { status: 'unavailable', reason: 'the state store does not answer' } }, '/readyz takes the replica out of the load balancer')
  // Past the blocks cache's age, so registration answers from the blocks loaded before the outage, not a fresh cache.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, stopped + 2 * BLOCKS_REFRESH_MS + 200 - Date.now())))
  t.equal((await registration(a)).status, 201, 'registration keeps working (the last blocks known apply; the client list notes the client at its next sign-in)')

  await redis.start()
  await untilReady(a)
  await untilReady(b)
  const connected = since((line) => line.msg === 'Redis connected')
  await Promise.all([a.waitForLog(connected), b.waitForLog(connected)])
  t.equal(a.logs().filter(since((line) => /Redis is unreachable/.test(line.msg))).length, 1, 'one warning per outage, not one per reconnect attempt')

  const afterOutage = await redeem(a, client, pendingCode, pending)
  t.equal(afterOutage.status, 200, 'the code refused during the outage was not consumed: it is redeemed now')
  const repeat = await redeem(b, client, pendingCode, pending)
  t.equal(repeat.status, 200, 'a repeat on the other replica within the retry window')
  t.equal(((await repeat.json()) as { access_token: string }).access_token, ((await afterOutage.json()) as { access_token: string }).access_token, 'gets the same answer: the shared state is intact after the outage')
  const resumed = await arriveAt(a, interrupted.callback)
  t.equal(resumed.status, 302, 'the sign-in the outage interrupted completes when the browser retries')
  t.equal((await redeem(b, client, codeFrom(resumed), interrupted)).status, 200)

  // The restarted Redis is empty, so the gateway forgot the mark of the code redeemed before the outage.
  // The upstream's own code is single-use too: it refuses the exchange and, as RFC 6749 §4.1.2 advises,
  // revokes what that code issued. Replays stay refused; the price is that victim's tokens.
  const forgotten = await failsWith(t, await redeem(b, client, redeemedCode, redeemed), 400, 'invalid_grant')
  t.not(forgotten.error_description, 'the authorization code was already used', 'refused by the upstream, not by the lost mark')
  t.equal(await isActive(cluster, redeemedTokens.access_token), false, 'the upstream revoked the tokens of the replayed code')
})

t.test('a demoted master: /readyz says read-only, the readiness metric says 0, and both recover when it is master again', async (t) => {
  const redis = await startPrivateRedis(t)
  const other = await startPrivateRedis(t)
  const cluster = await startCluster({ replicas: 1, redisUrl: redis.url })
  t.teardown(() => cluster.close())
  const [replica] = cluster.replicas as [Replica]
  const storeCheck = async () => /^oauth_gateway_ready\{check="store",store="redis"\} (\d)/m.exec(await (await fetch(`${replica.url}/metrics`)).text())?.[1]
  t.equal(await storeCheck(), '1')

  // What a failover does to the old master when it comes back: a replica of the new one, under the open connection.
  await ask(redis.port, 'REPLICAOF', '127.0.0.1', String(other.port))
  t.same(await readiness(replica), { status: 503, body: { status: 'unavailable', reason: 'the state store is read-only: Redis answers as a replica (a demoted master?)' } })
  t.equal(await storeCheck(), '0', 'oauth_gateway_ready{check="store"} is 0')

  await ask(redis.port, 'REPLICAOF', 'NO', 'ONE')
  await untilReady(replica)
  t.equal(await storeCheck(), '1')
})
