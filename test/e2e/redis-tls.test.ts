/**
 * Redis over TLS: a redis-server that speaks only TLS, its certificate
 * signed by a CA made in the test (openssl). The gateway verifies it against
 * REDIS_CA_FILE and serves complete flows; with another CA, or none (the
 * system's CAs), it refuses to start, saying why, instead of running
 * unready forever. A Redis Cluster over TLS whose certificate names only the
 * host (as ElastiCache's and MemoryDB's do) is reached by that name.
 */
import t from 'tap'
import { makeTlsFiles, startRedisCluster, startTlsRedis } from '../support/redis.ts'
import { completeFlow, register, startCluster, type Replica } from '../support/replicas.ts'

t.test('TLS: the CA verified; a wrong CA stops start-up with a clear message', async (t) => {
  const files = await makeTlsFiles(t)
  const redis = await startTlsRedis(t, files)
  const url = `rediss://127.0.0.1:${redis.port}`
  const cluster = await startCluster({ replicas: 1, env: { REDIS_URL: url, REDIS_CA_FILE: files.ca } })
  t.teardown(() => cluster.close())
  const [replica] = cluster.replicas as [Replica]
  t.match(await replica.waitForLog((line) => line.msg === 'state is kept in Redis'), { mode: 'single', tls: true })

  const client = await register(replica)
  const tokens = await completeFlow(cluster, client, { authorize: replica, callback: replica, token: replica })
  t.equal(tokens.status, 200, 'a complete flow, its state kept over TLS')

  const same = await cluster.startReplica({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, REDIS_TLS: '1', REDIS_CA_FILE: files.ca })
  t.equal((await fetch(`${same.url}/readyz`)).status, 200, 'REDIS_TLS=1 with a redis:// URL is TLS too')

  for (const [name, env] of [
    ['another CA', { REDIS_CA_FILE: files.otherCa }],
    ['the system CAs', { REDIS_CA_FILE: '' }],
  ] as const) {
    const refused = await cluster.startReplica(env).then(
      () => undefined,
      (err: Error) => err.message,
    )
    t.match(refused, /the gateway exited with 78/, `with ${name}: start-up refused (EX_CONFIG)`)
    t.match(refused, /Redis TLS: the server's certificate is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY): .*\); check REDIS_CA_FILE/, 'naming the reason and the variable')
  }
})

t.test('TLS in cluster mode: a certificate that names the host only, reached by that name', async (t) => {
  const files = await makeTlsFiles(t, ['DNS:localhost'])
  const redis = await startRedisCluster(t, { masters: 3, replicasPerMaster: 1, tls: { files, hostname: 'localhost' } })
  t.match(redis.env.REDIS_CLUSTER_NODES, /^localhost:\d+(,localhost:\d+)+$/)
  const cluster = await startCluster({ replicas: 1, env: { ...redis.env, REDIS_TLS: '1', REDIS_CA_FILE: files.ca } })
  t.teardown(() => cluster.close())
  const [replica] = cluster.replicas as [Replica]
  t.match(await replica.waitForLog((line) => line.msg === 'state is kept in Redis'), { mode: 'cluster', tls: true })
  t.match(await replica.waitForLog((line) => line.msg === 'Redis connected'), { master: /^localhost:\d+,localhost:\d+,localhost:\d+$/ }, 'every master by the name it announces')

  const client = await register(replica)
  const tokens = await completeFlow(cluster, client, { authorize: replica, callback: replica, token: replica })
  t.equal(tokens.status, 200, 'a complete flow, its grant written to the cluster over TLS')
})
