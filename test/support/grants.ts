/**
 * Looking inside what the gateway keeps, for tests that need the upstream's
 * own tokens (to call the upstream directly, or to prove one is never logged).
 */
import type { FastifyInstance } from 'fastify'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { GrantRegistry } from '../../gateway/grants/registry.ts'
import type { UpstreamRevocation } from '../../gateway/grants/grant.ts'
import type { GrantRefreshToken } from '../../gateway/routes/token.ts'
import type { GrantStorage } from '../../gateway/state/grant-storage.ts'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-store.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { deletePrefix, randomPrefix, SHARED_REDIS_URL } from './redis.ts'
import { TEST_SECRET } from './stack.ts'

const sealer = new Sealer([TEST_SECRET])

/** The grant a refresh token the gateway issued names (sealed with TEST_SECRET). */
export function grantOf(refreshToken: string): GrantRefreshToken {
  const opened = sealer.open<GrantRefreshToken>('grant', refreshToken)
  if (!opened) throw new Error('not a grant-bound refresh token of this gateway')
  return opened
}

/** The upstream refresh token the grant of `refreshToken` holds now. */
export async function upstreamRefreshTokenOf(gateway: FastifyInstance, refreshToken: string): Promise<string> {
  const stored = await gateway.gateway.grants.storage.getGrant(grantOf(refreshToken).g)
  if (!stored) throw new Error('the grant has ended')
  return sealer.open<{ rt: string }>('stored', stored.upstreamRefreshToken)!.rt
}

/**
 * A registry of the test's own on storage a gateway process uses (the state
 * file, or Redis under its prefix), as an operator's tool would open it. It
 * does not call the upstream: ending a grant records what it would have
 * revoked there in `upstreamRevocations`.
 */
export function registryOn(storage: GrantStorage, settings = { maxIdleDays: 90, maxAgeDays: 365 }) {
  const upstreamRevocations: string[] = []
  const registry = new GrantRegistry({
    storage,
    sealer,
    settings,
    async revokeUpstream(refreshToken): Promise<UpstreamRevocation> {
      upstreamRevocations.push(refreshToken)
      return 'unsupported'
    },
  })
  return { registry, upstreamRevocations }
}

/**
 * Grant storage on the shared Redis under `keyPrefix` (a random one unless a
 * cluster's is given), connected; its connection ends at teardown, and the
 * keys go with it when the prefix was made here.
 */
export async function redisGrantStorage(t: { teardown: (fn: () => unknown) => void }, keyPrefix?: string, commandTimeoutMs = 2000): Promise<RedisGrantStorage> {
  const prefix = keyPrefix ?? randomPrefix()
  const client = createRedisClient({ url: SHARED_REDIS_URL, keyPrefix: prefix, commandTimeoutMs })
  connectRedis(client, { info() {}, warn() {} })
  t.teardown(async () => {
    client.disconnect()
    if (keyPrefix === undefined) await deletePrefix(prefix)
  })
  await new Promise((resolve) => client.once('ready', resolve))
  return new RedisGrantStorage(client)
}

/**
 * A refresh token of a grant made here, for a client of `gateway`, whose
 * upstream refresh token is `upstreamRefreshToken` (one the upstream does not
 * know, to provoke its refusal): what a client holds after connecting.
 */
export async function refreshTokenFor(gateway: FastifyInstance, clientId: string, upstreamRefreshToken: string): Promise<string> {
  const found = await gateway.gateway.clients.find(clientId)
  if (!found.ok) throw new Error(`no such client: ${found.reason}`)
  const client = found.client
  const grant = await gateway.gateway.grants.create({ client, redirectUri: client.redirect_uris[0]!, upstreamRefreshToken, scope: 'openid offline_access' })
  return sealer.seal('grant', { g: grant.grantId, n: grant.generation, c: clientHandle(client.client_id) } satisfies GrantRefreshToken)
}
