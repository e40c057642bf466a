/**
 * The ioredis options each mode is built with (never connected here): TLS
 * with the CA for every node and sentinel, and the host names kept, so a
 * certificate that names the host verifies.
 */
import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { createRedisClient } from '../../gateway/state/redis-connection.ts'

const ca = '-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n'
const options = { keyPrefix: 'p:', commandTimeoutMs: 1000 }
const lookup = (cluster: Cluster, host: string) =>
  new Promise<string>((resolve, reject) => cluster.options.dnsLookup!(host, (err, address) => (err ? reject(err) : resolve(address))))

t.test('one node: TLS with the CA', async (t) => {
  const client = createRedisClient({ connection: { mode: 'single', url: 'rediss://redis.example.com:6379', tls: true, ca }, ...options })
  t.ok(client instanceof Redis)
  t.same((client as Redis).options.tls, { ca })
  t.equal((client as Redis).options.host, 'redis.example.com', 'reached by its name, which the certificate is checked against')
})

t.test('Sentinel: TLS to the sentinels and to the master they name', async (t) => {
  const client = createRedisClient({ connection: { mode: 'sentinel', sentinels: [{ host: 'sentinel-0.redis', port: 26379 }], masterName: 'mymaster', tls: true, ca }, ...options }) as Redis
  t.same(client.options.tls, { ca }, 'the data nodes')
  t.same(client.options.sentinelTLS, { ca }, 'the sentinels')
  t.equal(client.options.enableTLSForSentinelMode, true)
  t.same(client.options.sentinels, [{ host: 'sentinel-0.redis', port: 26379 }], 'the sentinels by the names given')
  const plain = createRedisClient({ connection: { mode: 'sentinel', sentinels: [{ host: 'sentinel-0.redis', port: 26379 }], masterName: 'mymaster', tls: false }, ...options }) as Redis
  t.equal(plain.options.tls, undefined)
  t.notOk(plain.options.enableTLSForSentinelMode)
})

t.test('Cluster: TLS on every node, the seeds reached by the names given', async (t) => {
  const client = createRedisClient({ connection: { mode: 'cluster', nodes: [{ host: 'clustercfg.example.cache.amazonaws.com', port: 6379 }], tls: true, ca }, ...options })
  t.ok(client instanceof Cluster)
  const cluster = client as Cluster
  t.same(cluster.options.redisOptions?.tls, { ca })
  t.equal(await lookup(cluster, 'clustercfg.example.cache.amazonaws.com'), 'clustercfg.example.cache.amazonaws.com', 'no lookup: TLS checks the certificate against the name, not an address')

  const plain = createRedisClient({ connection: { mode: 'cluster', nodes: [{ host: 'localhost', port: 6379 }], tls: false }, ...options }) as Cluster
  t.equal(plain.options.redisOptions?.tls, undefined)
  t.match(await lookup(plain, 'localhost'), /^(127\.0\.0\.1|::1)$/, 'without TLS, ioredis resolves the seeds as usual')
})
