/**
 * GATEWAY_SECRET rotation across a deploy of two replicas on Redis: the
 * replicas restart with a new first key and the old one after it, and
 * everything issued under the old key (client ids and secrets, sign-ins in
 * progress, refresh tokens) keeps working; once the old key is removed, its
 * clients are refused with 401 invalid_client so that they register again.
 */
import t from 'tap'
import { deletePrefix, SHARED_REDIS_URL } from '../support/redis.ts'
import { arriveAt, authorizeAndSignIn, codeFrom, completeFlow, redeem, refresh, register, startCluster, tokenRequest, type Replica } from '../support/replicas.ts'
import { failsWith } from '../support/stack.ts'

const KEY_A = 'rotation-test-key-A-0123456789abcdefghij'
const KEY_B = 'rotation-test-key-B-0123456789abcdefghij'

/** The sealed value's key id: what the gateway looks the key up by. */
const keyIdOf = (sealed: string) => sealed.split('.')[0]

t.test('a client registered under the old key keeps working until the key is removed', async (t) => {
  const cluster = await startCluster({ replicas: 2, redisUrl: SHARED_REDIS_URL, secret: KEY_A })
  t.teardown(async () => {
    await cluster.close()
    await deletePrefix(cluster.keyPrefix)
  })
  const [a, b] = cluster.replicas as [Replica, Replica]
  const old = await register(a, { token_endpoint_auth_method: 'client_secret_basic' })
  const before = await completeFlow(cluster, old, { authorize: a, callback: b, token: a })
  t.equal(before.status, 200, 'the client works under key A')
  const oldTokens = (await before.json()) as { refresh_token: string }
  const inProgress = await authorizeAndSignIn(cluster, b, old)

  // Deploy 1: B signs, A still opens.
  const [c, d] = (await cluster.restart(2, { GATEWAY_SECRET: `${KEY_B},${KEY_A}` })) as [Replica, Replica]
  t.equal((await completeFlow(cluster, old, { authorize: c, callback: d, token: c })).status, 200, 'the old client signs in again; its secret (a MAC under A) still verifies')
  const code = codeFrom(await arriveAt(c, inProgress.callback))
  t.equal((await redeem(d, old, code, inProgress)).status, 200, 'a sign-in started under A completes under B,A')
  t.equal((await refresh(d, old, oldTokens.refresh_token)).status, 200, 'a refresh token sealed under A is accepted')
  const fresh = await register(c, { token_endpoint_auth_method: 'client_secret_basic' })
  t.not(keyIdOf(fresh.client_id), keyIdOf(old.client_id), 'new clients are sealed under B')

  // Deploy 2: A is removed.
  const [e, f] = (await cluster.restart(2, { GATEWAY_SECRET: KEY_B })) as [Replica, Replica]
  const refused = await tokenRequest(e, old, { grant_type: 'refresh_token', refresh_token: 'anything' })
  t.equal(refused.headers.get('www-authenticate'), 'Basic realm="oauth-gateway"', 'with a challenge')
  await failsWith(t, refused, 401, 'invalid_client')
  const page = await fetch(`${f.url}/authorize?client_id=${encodeURIComponent(old.client_id)}&response_type=code`)
  t.equal(page.status, 400, '/authorize refuses the old client')
  t.match(await page.text(), /not registered/, 'with a page that says so')
  t.equal((await completeFlow(cluster, fresh, { authorize: e, callback: f, token: e })).status, 200, 'a client registered under B keeps working')
})
