/** 100,000 grants in real Redis: paginated listings, bounded memory (test/support/grant-scale.ts). */
import t from 'tap'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-store.ts'
import { walk } from '../support/grant-scale.ts'
import { deletePrefix, randomPrefix, SHARED_REDIS_URL } from '../support/redis.ts'

// 100,000 grants through ioredis take a minute or more on a loaded machine.
t.setTimeout(400_000)

t.test('Redis', async (t) => {
  const prefix = randomPrefix()
  const client = createRedisClient({ url: SHARED_REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 10_000 })
  connectRedis(client, { info() {}, warn() {} })
  await new Promise((resolve) => client.once('ready', resolve))
  t.teardown(async () => {
    client.disconnect()
    await deletePrefix(prefix)
  })
  await walk(t, new RedisGrantStorage(client))
})
