/**
 * Grant storage in Redis, for replicas that share REDIS_URL. Every key sits
 * under the one hash tag `{grants}`, so every transaction and script touches
 * one slot and works on Redis Cluster; nothing scans the keyspace: listings
 * walk sorted-set indexes (all members at score 0, ordered by id, read with
 * ZRANGE BYLEX), and expiry walks an index scored by `activeUntil`.
 *
 *   {grants}:grant:<id>        hash: r (the record, JSON), g (generation), u (user id), c (client key)
 *   {grants}:all               every grant id
 *   {grants}:user:<user id>    grant ids of one user
 *   {grants}:client:<key>      grant ids of one client
 *   {grants}:expiry            grant ids scored by activeUntil
 *   {grants}:rev:<key>         a revocation (JSON), expiring with it
 *   {grants}:blocks            hash: block id → block (JSON)
 *   {grants}:clients           every client key; {grants}:client-records,
 *                              {grants}:client-first and {grants}:client-type hold
 *                              its record, first_seen and first known application type
 *
 * Grants, blocks and revocations are only as durable as Redis: run it with
 * AOF persistence (appendonly yes). Every write goes through `#write`, which
 * waits for replicas to acknowledge it (redis.waitReplicas; docs/redis.md).
 */
import type { ChainableCommander } from 'ioredis'
import type { Block, ClientRecord, ClientSummary, Grant, Revocation } from '../grants/grant.ts'
import { clientKey, type GrantFilter, type GrantStorage, type KeyPage } from './grant-storage.ts'
import type { RedisClient } from './redis-connection.ts'
import { redisErrorKind, replicationShortfall, type CommandObserver, type DurabilityOptions, type RedisErrorKind } from './redis-store.ts'
import { StoreUnavailable } from './store.ts'

const TAG = '{grants}'
const KEYS = {
  grant: (id: string) => `${TAG}:grant:${id}`,
  all: `${TAG}:all`,
  user: (userId: string) => `${TAG}:user:${userId}`,
  client: (key: string) => `${TAG}:client:${key}`,
  expiry: `${TAG}:expiry`,
  revocation: (key: string) => `${TAG}:rev:${key}`,
  blocks: `${TAG}:blocks`,
  clients: `${TAG}:clients`,
  clientRecords: `${TAG}:client-records`,
  clientFirst: `${TAG}:client-first`,
  clientType: `${TAG}:client-type`,
}
/** A grant's hash outlives its activeUntil by this much, so the purge still finds what indexes it; then Redis drops it anyway. */
const GRACE_SECONDS = 24 * 60 * 60
const PURGE_BATCH = 1000

/** Compare and set on the generation: the record is replaced only if nobody else replaced it first. */
const UPDATE_GRANT = `
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'g', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
return 1`

/**
 * Ends a grant whose generation is still ARGV[1]: deletes it, drops it from
 * its indexes (KEYS[2..5]) and writes the revocations (KEYS[6..], ARGV pairs of value and expiry in ms).
 */
const END_GRANT = `
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[2]) end
for i = 6, #KEYS do
  redis.call('SET', KEYS[i], ARGV[(i - 6) * 2 + 3], 'PXAT', ARGV[(i - 6) * 2 + 4], 'NX')
end
return 1`

function parse<T>(text: string | null | undefined): T | undefined {
  return typeof text === 'string' ? (JSON.parse(text) as T) : undefined
}

export class RedisGrantStorage implements GrantStorage {
  readonly #client: RedisClient
  readonly #waitReplicas: number
  readonly #waitTimeoutMs: number
  readonly #observe: CommandObserver

  /**
   * Shares the replica's connection (its key prefix applies); the RedisStore closes it. Every write waits
   * for `waitReplicas` replicas (config redis.waitReplicas) for at most `waitTimeoutMs`.
   */
  constructor(client: RedisClient, options: DurabilityOptions & { observe?: CommandObserver } = {}) {
    this.#client = client
    this.#waitReplicas = options.waitReplicas ?? 0
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 500
    this.#observe = options.observe ?? (() => {})
  }

  async createGrant(grant: Grant): Promise<void> {
    await this.createGrants([grant])
  }

  async createGrants(grants: readonly Grant[]): Promise<void> {
    await this.#write((multi) => {
      for (const grant of grants) {
        const key = clientKey(grant.clientId)
        multi.hset(KEYS.grant(grant.grantId), { r: JSON.stringify(grant), g: String(grant.generation), u: grant.user?.id ?? '', c: key })
        multi.pexpireat(KEYS.grant(grant.grantId), (grant.activeUntil + GRACE_SECONDS) * 1000)
        multi.zadd(KEYS.all, 0, grant.grantId)
        multi.zadd(KEYS.client(key), 0, grant.grantId)
        if (grant.user) multi.zadd(KEYS.user(grant.user.id), 0, grant.grantId)
        multi.zadd(KEYS.expiry, grant.activeUntil, grant.grantId)
      }
    })
  }

  async getGrant(grantId: string): Promise<Grant | undefined> {
    return parse<Grant>(await this.#run(() => this.#client.hget(KEYS.grant(grantId), 'r')))
  }

  /**
   * A refresh's record of what the upstream answered. It waits for replicas
   * as every write does, but a short WAIT does not fail it (it is counted as
   * a replication error): the upstream has already rotated its refresh token,
   * so a 503 here would leave the client holding a refresh token that its
   * retry finds replaced, disconnecting it for a shortfall the master itself
   * survived. The master holds the update either way.
   */
  async updateGrant(grant: Grant, expectedGeneration: number): Promise<boolean> {
    const [updated] = await this.#write((multi) =>
      multi.eval(UPDATE_GRANT, 2, KEYS.grant(grant.grantId), KEYS.expiry,
        JSON.stringify(grant), String(expectedGeneration), String(grant.generation), (grant.activeUntil + GRACE_SECONDS) * 1000, grant.activeUntil, grant.grantId),
    { shortfall: 'tolerated' })
    return updated === 1
  }

  async endGrant(grantId: string, revocations: (grant: Grant) => Revocation[], userId?: string): Promise<Grant | undefined> {
    // Read, then end atomically only if nobody changed it in between (a refresh bumps the generation: read again).
    for (let attempt = 0; attempt < 5; attempt++) {
      const stored = await this.#run(() => this.#client.hgetall(KEYS.grant(grantId)))
      const grant = parse<Grant>(stored.r)
      if (!grant || (userId !== undefined && stored.u !== userId)) return undefined
      const marks = revocations(grant)
      const keys = [KEYS.grant(grantId), KEYS.all, KEYS.expiry, KEYS.client(stored.c ?? clientKey(grant.clientId)), KEYS.user(stored.u || '-'), ...marks.map((mark) => KEYS.revocation(mark.key))]
      const values = marks.flatMap((mark) => [JSON.stringify(mark), String(mark.expiresAt * 1000)])
      const [ended] = await this.#write((multi) => multi.eval(END_GRANT, keys.length, ...keys, stored.g ?? '', grantId, ...values))
      if (ended === 1) return grant
    }
    throw new StoreUnavailable('Redis: the grant kept changing while it was being ended')
  }

  async listGrants(filter: GrantFilter, limit: number, after?: string): Promise<KeyPage<Grant>> {
    const index = filter.userId !== undefined ? KEYS.user(filter.userId) : filter.clientId !== undefined ? KEYS.client(clientKey(filter.clientId)) : KEYS.all
    // Both filters: walk the user's (few) grants and keep the client's.
    const wanted = filter.userId !== undefined && filter.clientId !== undefined ? clientKey(filter.clientId) : undefined
    const items: Grant[] = []
    let from = after
    for (;;) {
      const ids = await this.#run(() => this.#client.zrangebylex(index, from === undefined ? '-' : `(${from}`, '+', 'LIMIT', 0, limit + 1 - items.length))
      const batch = ids.slice(0, limit - items.length)
      const records = await this.#records(batch)
      const gone: string[] = []
      batch.forEach((id, i) => {
        const grant = records[i]
        if (!grant) gone.push(id)
        else if (wanted === undefined || clientKey(grant.clientId) === wanted) items.push(grant)
      })
      // An index entry whose grant Redis expired: dropped as it is met.
      if (gone.length) await this.#write((multi) => multi.zrem(index, ...gone))
      const more = ids.length > batch.length
      if (!more) return { items }
      from = batch.at(-1)
      if (items.length >= limit) return { items, last: from }
    }
  }

  async countGrants(): Promise<number> {
    return this.#run(() => this.#client.zcard(KEYS.all))
  }

  async addRevocations(revocations: readonly Revocation[]): Promise<void> {
    if (!revocations.length) return
    await this.#write((multi) => {
      for (const revocation of revocations) multi.set(KEYS.revocation(revocation.key), JSON.stringify(revocation), 'PXAT', revocation.expiresAt * 1000, 'NX')
    })
  }

  async getRevocation(key: string): Promise<Revocation | undefined> {
    return parse<Revocation>(await this.#run(() => this.#client.get(KEYS.revocation(key))))
  }

  async addRevocationOnce(revocation: Revocation): Promise<boolean> {
    const [written] = await this.#write((multi) => multi.set(KEYS.revocation(revocation.key), JSON.stringify(revocation), 'PXAT', revocation.expiresAt * 1000, 'NX'))
    return written === 'OK'
  }

  async removeRevocation(key: string): Promise<void> {
    await this.#write((multi) => multi.del(KEYS.revocation(key)))
  }

  async addBlock(block: Block): Promise<void> {
    await this.#write((multi) => multi.hset(KEYS.blocks, block.blockId, JSON.stringify(block)))
  }

  async removeBlock(blockId: string): Promise<boolean> {
    const [removed] = await this.#write((multi) => multi.hdel(KEYS.blocks, blockId))
    return removed === 1
  }

  async listBlocks(): Promise<Block[]> {
    const all = await this.#run(() => this.#client.hgetall(KEYS.blocks))
    return Object.keys(all).sort().map((id) => JSON.parse(all[id]!) as Block)
  }

  async recordClient(client: ClientRecord): Promise<void> {
    const key = clientKey(client.clientId)
    await this.#write((multi) => {
      multi.hsetnx(KEYS.clientFirst, key, String(client.firstSeenAt))
      if (client.applicationType) multi.hsetnx(KEYS.clientType, key, client.applicationType)
      multi.hset(KEYS.clientRecords, key, JSON.stringify(client))
      multi.zadd(KEYS.clients, 0, key)
    })
  }

  async listClients(limit: number, after?: string): Promise<KeyPage<ClientSummary>> {
    const keys = await this.#run(() => this.#client.zrangebylex(KEYS.clients, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, limit + 1))
    const page = keys.slice(0, limit)
    if (!page.length) return { items: [] }
    const answers = await this.#run(async () => {
      const pipeline = this.#client.pipeline()
      pipeline.hmget(KEYS.clientRecords, ...page)
      pipeline.hmget(KEYS.clientFirst, ...page)
      pipeline.hmget(KEYS.clientType, ...page)
      for (const key of page) pipeline.zcard(KEYS.client(key))
      return (await pipeline.exec()) ?? []
    })
    const [records, firsts, types, ...counts] = answers.map(([err, value]) => {
      if (err) throw new StoreUnavailable(`Redis: ${err.message}`, { cause: err })
      return value
    }) as [(string | null)[], (string | null)[], (ClientRecord['applicationType'] | null)[], ...number[]]
    const items: ClientSummary[] = []
    page.forEach((_key, i) => {
      const record = parse<ClientRecord>(records[i])
      if (record) items.push({ ...record, firstSeenAt: Number(firsts[i] ?? record.firstSeenAt), applicationType: types[i] ?? record.applicationType, grants: counts[i] ?? 0 })
    })
    return { items, last: keys.length > limit ? page.at(-1) : undefined }
  }

  async purgeExpired(now: number): Promise<Grant[]> {
    const ids = await this.#run(() => this.#client.zrangebyscore(KEYS.expiry, '-inf', now, 'LIMIT', 0, PURGE_BATCH))
    const expired: Grant[] = []
    for (const id of ids) {
      const stored = await this.#run(() => this.#client.hgetall(KEYS.grant(id)))
      const grant = parse<Grant>(stored.r)
      // Refreshed since the index was read: its score moved on, it stays.
      if (grant && grant.activeUntil > now) continue
      const keys = [KEYS.grant(id), KEYS.all, KEYS.expiry, KEYS.client(stored.c ?? '-'), KEYS.user(stored.u || '-')]
      const [ended] = await this.#write((multi) => multi.eval(END_GRANT, keys.length, ...keys, stored.g ?? '', id))
      if (ended === 1 && grant) expired.push(grant)
      else if (!grant) await this.#write((multi) => multi.zrem(KEYS.expiry, id).zrem(KEYS.all, id))
    }
    return expired
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#client.ping()) === 'PONG'
    } catch {
      return false
    }
  }

  async close(): Promise<void> {
    // The connection is the RedisStore's, which closes it.
  }

  async #records(ids: string[]): Promise<(Grant | undefined)[]> {
    if (!ids.length) return []
    return this.#run(async () => {
      const pipeline = this.#client.pipeline()
      for (const id of ids) pipeline.hget(KEYS.grant(id), 'r')
      const answers = (await pipeline.exec()) ?? []
      return answers.map(([err, value]) => {
        if (err) throw err
        return parse<Grant>(value as string | null)
      })
    })
  }

  /**
   * Every write of grants, blocks, revocations and clients: one MULTI built by
   * `build` (commands and scripts, all in the {grants} slot), answered with
   * each command's result. With `waitReplicas`, a WAIT follows the EXEC in the
   * same pipeline: one round trip, on the connection (the cluster node) that
   * took the write, which is what WAIT counts for. Fewer acknowledgements
   * fail the write (503): the change is on the master, but a failover could
   * forget it, so the caller is not told it is done (a retry is safe: every
   * write here is idempotent or compare-and-set).
   */
  async #write(build: (multi: ChainableCommander) => unknown, options: { shortfall?: 'fails' | 'tolerated' } = {}): Promise<unknown[]> {
    return this.#run('grant-write', async (fellShort) => {
      if (this.#waitReplicas === 0) {
        const multi = this.#client.multi()
        build(multi)
        const answers = (await multi.exec()) ?? []
        return answers.map(([err, value]) => {
          if (err) throw err
          return value
        })
      }
      const pipeline = this.#client.pipeline()
      // MULTI inside the pipeline: ioredis has it at run time, its types leave it out of a pipeline.
      ;(pipeline as unknown as { multi(): void }).multi()
      build(pipeline)
      // Inside a pipeline after multi(), exec() queues the EXEC command (ioredis), and the pipeline goes on.
      void pipeline.exec()
      pipeline.wait(this.#waitReplicas, this.#waitTimeoutMs)
      const answers = (await pipeline.exec()) ?? []
      const [execError, results] = answers.at(-2) ?? []
      const [waitError, acknowledged] = answers.at(-1) ?? []
      if (execError) throw execError
      if (waitError) throw waitError
      if ((acknowledged as number) < this.#waitReplicas) {
        const shortfall = replicationShortfall(acknowledged as number, this.#waitReplicas, this.#waitTimeoutMs)
        if (options.shortfall !== 'tolerated') throw shortfall
        fellShort(redisErrorKind(shortfall))
      }
      return (results as unknown[]).map((value) => {
        if (value instanceof Error) throw value
        return value
      })
    })
  }

  /**
   * Any failure of Redis is answered 503, as the short-lived store's are; each
   * call's time goes to metrics once, as failed when it threw or when the work
   * tells of a failure it tolerated (a refresh's short WAIT).
   */
  async #run<T>(command: string | (() => Promise<T>), work?: (fellShort: (kind: RedisErrorKind) => void) => Promise<T>): Promise<T> {
    const [name, run] = typeof command === 'string' ? [command, work!] : ['grant-read', command]
    const started = performance.now()
    let tolerated: RedisErrorKind | undefined
    try {
      const result = await run((kind) => { tolerated = kind })
      this.#observe(name, (performance.now() - started) / 1000, tolerated)
      return result
    } catch (err) {
      this.#observe(name, (performance.now() - started) / 1000, redisErrorKind(err))
      if (err instanceof StoreUnavailable) throw err
      throw new StoreUnavailable(`Redis: ${(err as Error).message}`, { cause: err })
    }
  }
}
