/**
 * Grants, blocks and revocations survive what production does to the
 * gateway, with real processes (`node gateway/server.ts`): a single replica
 * restarted on its SQLite state file between each step, one killed with
 * SIGKILL while it writes (the file stays valid), and two replicas on one
 * Redis that see each other's grants and blocks (a new block reaches the
 * other replica's cache within one second). Revocations and blocks are made
 * by a registry of the test's own on the same file or Redis, as an
 * operator's tool would; it does not call the upstream (grants.test.ts
 * covers that with the real upstream). On Redis, /metrics times the grant
 * reads and writes.
 */
import { DatabaseSync } from 'node:sqlite'
import t from 'tap'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { grantOf, redisGrantStorage, registryOn } from '../support/grants.ts'
import { sample } from '../support/metrics.ts'
import { deletePrefix, SHARED_REDIS_URL } from '../support/redis.ts'
import { completeFlow, refresh, register, startCluster, type Cluster, type Replica, type TestClient } from '../support/replicas.ts'
import { failsWith } from '../support/stack.ts'

// Each test starts, restarts and kills gateway processes: minutes on a loaded machine.
t.setTimeout(400_000)

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'

interface Connected {
  client: TestClient
  refreshToken: string
}

async function connect(cluster: Cluster, replica: Replica, metadata: Record<string, unknown> = {}): Promise<Connected> {
  const client = await register(replica, metadata)
  const answer = await completeFlow(cluster, client, { authorize: replica, callback: replica, token: replica })
  if (answer.status !== 200) throw new Error(`the flow failed: ${answer.status} ${await answer.text()}`)
  return { client, refreshToken: ((await answer.json()) as { refresh_token: string }).refresh_token }
}

/** Refreshes and keeps the new refresh token (the upstream rotates). */
async function refreshes(replica: Replica, connected: Connected): Promise<number> {
  const answer = await refresh(replica, connected.client, connected.refreshToken)
  if (answer.status === 200) connected.refreshToken = ((await answer.json()) as { refresh_token?: string }).refresh_token ?? connected.refreshToken
  return answer.status
}

async function metricsOf(replica: Replica) {
  return (await fetch(`${replica.url}/metrics`)).text()
}

t.test('a single replica restarted on its state file keeps grants, blocks and revocations', async (t) => {
  const cluster = await startCluster({ replicas: 1 })
  t.teardown(() => cluster.close())
  let [replica] = cluster.replicas as [Replica]
  const chatgpt = await connect(cluster, replica)
  const claude = await connect(cluster, replica, { client_name: 'Claude', redirect_uris: [CLAUDE_REDIRECT] })
  const stranger = await register(replica, { client_name: 'Never connects' })

  ;[replica] = (await cluster.restart(1)) as [Replica]
  t.equal(await refreshes(replica, chatgpt), 200, 'after a restart, a grant made before it refreshes')
  t.equal(sample(await metricsOf(replica), 'oauth_gateway_grants_active', {}), 2, 'both grants are there')

  // Offline, as an operator's tool would: revoke one grant, block a client.
  await replica.stop()
  const storage = new SqliteGrantStorage(cluster.statePath)
  const { registry } = registryOn(storage)
  t.equal((await registry.list({})).items.length, 2)
  t.equal((await registry.revokeGrant(grantOf(chatgpt.refreshToken).g, 'admin')).ended, true)
  await registry.addBlock({ kind: 'client_id', value: stranger.client_id, reason: 'abuse' })
  registry.close()
  await storage.close()

  replica = await cluster.startReplica()
  const refused = await failsWith(t, await refresh(replica, chatgpt.client, chatgpt.refreshToken), 400, 'invalid_grant')
  t.match(refused.error_description, /an administrator revoked it/, 'the revocation was kept, with its reason')
  t.equal(await refreshes(replica, claude), 200, 'the other grant refreshes')
  let metrics = await metricsOf(replica)
  t.equal(sample(metrics, 'oauth_gateway_grants_active', {}), 1)
  t.equal(sample(metrics, 'oauth_gateway_blocks', {}), 1, 'the block was kept')

  ;[replica] = (await cluster.restart(1)) as [Replica]
  t.equal(await refreshes(replica, claude), 200, 'its rotated refresh token was kept too')
  await failsWith(t, await refresh(replica, chatgpt.client, chatgpt.refreshToken), 400, 'invalid_grant')
  metrics = await metricsOf(replica)
  t.equal(sample(metrics, 'oauth_gateway_grants_active', {}), 1)
  t.equal(sample(metrics, 'oauth_gateway_blocks', {}), 1)
})

t.test('killed while it writes, the state file is still valid', async (t) => {
  const cluster = await startCluster({ replicas: 1 })
  t.teardown(() => cluster.close())
  const [replica] = cluster.replicas as [Replica]
  const connected = await connect(cluster, replica)
  // Refreshes one after another (each writes the grant) and registrations with code exchanges beside them, until the kill.
  let killed = false
  let answered = 0
  const refreshing = (async () => {
    while (!killed) {
      const status = await refreshes(replica, connected).catch(() => 0)
      if (status === 200) answered++
    }
  })()
  const connecting = (async () => {
    while (!killed) await connect(cluster, replica).catch(() => undefined)
  })()
  while (answered < 5) await new Promise((resolve) => setTimeout(resolve, 20))
  replica.signal('SIGKILL')
  killed = true
  await Promise.all([refreshing, connecting])
  await replica.stop()
  t.ok(answered >= 5, `${answered} refreshes answered before the kill`)

  const db = new DatabaseSync(cluster.statePath)
  t.same(db.prepare('PRAGMA integrity_check').all(), [{ integrity_check: 'ok' }], 'SQLite finds the file intact')
  db.close()
  const storage = new SqliteGrantStorage(cluster.statePath)
  const grant = await storage.getGrant(grantOf(connected.refreshToken).g)
  await storage.close()
  const seen = grantOf(connected.refreshToken).n
  t.ok(grant && (grant.generation === seen || grant.generation === seen + 1), `the grant is at the generation last answered (${seen}) or the one whose answer the kill cut off (${grant?.generation})`)

  const restarted = await cluster.startReplica()
  t.ok(sample(await metricsOf(restarted), 'oauth_gateway_grants_active', {}) >= 1, 'a new process opens the file and serves')
})

t.test('two replicas on one Redis see each other\'s grants and blocks', async (t) => {
  const cluster = await startCluster({ replicas: 2, redisUrl: SHARED_REDIS_URL })
  t.teardown(async () => {
    await cluster.close()
    await deletePrefix(cluster.keyPrefix)
  })
  const [a, b] = cluster.replicas as [Replica, Replica]
  const one = await connect(cluster, a)
  const two = await connect(cluster, a, { client_name: 'Claude', redirect_uris: [CLAUDE_REDIRECT] })
  t.equal(await refreshes(b, one), 200, 'a grant made on A refreshes on B')
  t.equal(sample(await metricsOf(b), 'oauth_gateway_grants_active', {}), 2, 'B counts the grants A made')
  // Grant storage's commands are measured as the store's are (docs/redis.md, Metrics).
  const latency = 'oauth_gateway_redis_command_duration_seconds_count'
  t.ok(sample(await metricsOf(a), latency, { command: 'grant-write', outcome: 'ok' }) >= 2, 'A measured the writes of the grants it made')
  t.ok(sample(await metricsOf(b), latency, { command: 'grant-read', outcome: 'ok' }) >= 1, 'B measured the read of the grant it refreshed')

  const { registry } = registryOn(await redisGrantStorage(t, cluster.keyPrefix))
  t.teardown(() => registry.close())

  const blockedAt = Date.now()
  const { ended } = await registry.addBlock({ kind: 'client_id', value: one.client.client_id, reason: 'abuse' })
  t.equal(ended, 1, 'the block ended its grant')
  let seenAfter = Infinity
  while (Date.now() - blockedAt < 3000) {
    const [onA, onB] = await Promise.all([metricsOf(a), metricsOf(b)])
    if (sample(onA, 'oauth_gateway_blocks', {}) === 1 && sample(onB, 'oauth_gateway_blocks', {}) === 1) {
      seenAfter = Date.now() - blockedAt
      break
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  t.ok(seenAfter <= 1000, `both replicas hold the new block within one second (${seenAfter} ms)`)
  // A block refuses the client itself (RFC 6749 §5.2 invalid_client), before its grant is looked at.
  await failsWith(t, await refresh(b, one.client, one.refreshToken), 401, 'invalid_client')
  await failsWith(t, await refresh(a, one.client, one.refreshToken), 401, 'invalid_client')

  t.equal((await registry.revokeGrant(grantOf(two.refreshToken).g, 'admin')).ended, true)
  await failsWith(t, await refresh(b, two.client, two.refreshToken), 400, 'invalid_grant')
  t.equal(sample(await metricsOf(a), 'oauth_gateway_grants_active', {}), 0)
})
