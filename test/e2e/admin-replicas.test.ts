/**
 * The Admin API across replicas: two gateway processes on one Redis. Grants
 * made through one replica are listed and revoked through the other; a block
 * made through one replica's Admin API refuses the client on the other within
 * one second (/register, /authorize, /token), and lifting it on the other lets
 * the client back in on the first within one second.
 */
import t from 'tap'
import { admin, ADMIN_TOKEN } from '../support/admin.ts'
import { deletePrefix, SHARED_REDIS_URL } from '../support/redis.ts'
import { completeFlow, refresh, register, registration, tokenRequest, startCluster, type Replica, type TestClient } from '../support/replicas.ts'
import { failsWith } from '../support/stack.ts'

const cluster = await startCluster({ replicas: 2, redisUrl: SHARED_REDIS_URL, env: { ADMIN_TOKEN } })
t.teardown(async () => {
  await cluster.close()
  await deletePrefix(cluster.keyPrefix)
})
const [a, b] = cluster.replicas as [Replica, Replica]

/** /authorize on a replica, as the browser opens it: 400 (the page) once refused, 200 (consent) before. */
function authorizeStatus(replica: Replica, client: TestClient): Promise<number> {
  const url = new URL('/authorize', replica.url)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0]!,
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
    state: 'replicas',
  }).toString()
  return fetch(url, { redirect: 'manual' }).then(async (response) => (await response.arrayBuffer(), response.status))
}

/** How long after `since` the check first holds, polled every 25 ms for up to 5 s. */
async function millisecondsUntil(since: number, check: () => Promise<boolean>): Promise<number> {
  while (!(await check())) {
    if (Date.now() - since > 5000) return Infinity
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return Date.now() - since
}

t.test('a block made on one replica refuses the client on the other within one second', async (t) => {
  const client = await register(a, { client_name: 'Replicated Scam' })
  t.equal(await authorizeStatus(b, client), 200, 'B lets the client sign in before the block')

  const { block_id: blockId } = await admin(a.url, '/admin/blocks', { body: { client_name_pattern: 'replicated *', reason: 'seen on every replica' } }, 201)
  const blockedAt = Date.now()
  const elapsed = await millisecondsUntil(blockedAt, async () => (await authorizeStatus(b, client)) === 400)
  t.ok(elapsed <= 1000, `B refuses /authorize ${elapsed} ms after A answered`)
  t.equal((await registration(b, { client_name: 'Replicated Scam Two' })).status, 400, 'B refuses the registration')
  await failsWith(t, await tokenRequest(b, client, { grant_type: 'refresh_token', refresh_token: 'anything' }), 401, 'invalid_client')
  t.match((await admin(b.url, '/admin/blocks')).blocks, [{ block_id: blockId, client_name_pattern: 'replicated *', reason: 'seen on every replica' }], 'B lists the block A made')

  await admin(b.url, `/admin/blocks/${blockId}`, { method: 'DELETE' }, 204)
  const liftedAt = Date.now()
  const back = await millisecondsUntil(liftedAt, async () => (await authorizeStatus(a, client)) === 200)
  t.ok(back <= 1000, `lifted on B, A lets the client in ${back} ms later`)
})

t.test('grants made through one replica are listed and revoked through the other', async (t) => {
  const client = await register(a, { client_name: 'Across replicas' })
  const first = await completeFlow(cluster, client, { authorize: a, callback: a, token: a })
  t.equal(first.status, 200, 'connected through A')
  const tokens = (await first.json()) as { refresh_token: string }
  const second = await completeFlow(cluster, client, { authorize: a, callback: a, token: a })
  const other = (await second.json()) as { refresh_token: string }

  const { grants } = await admin(b.url, `/admin/grants?client_id=${encodeURIComponent(client.client_id)}`)
  t.equal(grants.length, 2, 'B lists the grants A made')
  const { clients } = await admin(b.url, '/admin/clients?limit=1000')
  t.match(clients.find((c: any) => c.client_id === client.client_id), { client_name: 'Across replicas', grants: 2 })

  await admin(b.url, `/admin/grants/${grants[0].grant_id}`, { method: 'DELETE' }, 204)
  const answers = [await refresh(a, client, tokens.refresh_token), await refresh(a, client, other.refresh_token)]
  t.same(answers.map((response) => response.status).sort(), [200, 400], 'on A, the grant ended through B is refused, the other refreshes')
  const renewed = (await answers.find((response) => response.status === 200)!.json()) as { refresh_token: string }
  t.same(await admin(b.url, '/admin/grants/revoke', { body: { client_id: client.client_id } }), { revoked: 1 }, 'the rest, by client, through B')
  t.equal((await refresh(a, client, renewed.refresh_token)).status, 400, 'and A refuses it')
})
