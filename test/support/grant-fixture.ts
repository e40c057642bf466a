/** Grant records as the registry writes them, for tests of grant storage on Redis (one field set, `n` in the id). */
import type { Grant, Revocation } from '../../gateway/grants/grant.ts'

export function grantRecord(n: number, overrides: Partial<Grant> = {}): Grant {
  const now = Math.floor(Date.now() / 1000)
  return {
    grantId: `g_${String(n).padStart(8, '0')}`,
    clientId: `client-${n % 3}`,
    clientName: `Client ${n % 3}`,
    unverified: true,
    redirectHost: 'chatgpt.com',
    preset: 'chatgpt',
    user: { id: n % 2 === 0 ? 'alice' : 'bob' },
    scope: 'openid',
    createdAt: now,
    lastUsedAt: now,
    refreshCount: 0,
    expiresAt: now + 3600,
    activeUntil: now + 3600,
    upstreamRefreshToken: 'sealed',
    generation: 0,
    accessTokens: [],
    ...overrides,
  }
}

/** An admin's revocation of grant `grantId`, live for an hour. */
export function revocationOf(grantId: string): Revocation {
  const now = Math.floor(Date.now() / 1000)
  return { key: `grant:${grantId}`, reason: 'revoked_by_admin', endedAt: now, expiresAt: now + 3600 }
}
