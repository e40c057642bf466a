/** 100,000 grants in real Redis: paginated listings, bounded memory (test/support/grant-scale.ts). */
import t from 'tap'
import { walk } from '../support/grant-scale.ts'
import { redisGrantStorage } from '../support/grants.ts'

// 100,000 grants through ioredis take a minute or more on a loaded machine.
t.setTimeout(400_000)

t.test('Redis', async (t) => {
  await walk(t, await redisGrantStorage(t, undefined, 10_000))
})
