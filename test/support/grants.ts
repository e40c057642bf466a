/**
 * Looking inside what the gateway keeps, for tests that need the upstream's
 * own tokens (to call the upstream directly, or to prove one is never logged).
 */
import type { FastifyInstance } from 'fastify'
import type { GrantRefreshToken } from '../../gateway/routes/token.ts'
import { Sealer } from '../../gateway/state/seal.ts'
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
