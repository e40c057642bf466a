/**
 * The grants, for ops: GET /admin/grants lists them (of one user, of one
 * client, or all), DELETE /admin/grants/{grant_id} ends one, POST
 * /admin/grants/revoke ends every grant of a client or of a user. Ending a
 * grant revokes its upstream refresh token too (RFC 7009), where the
 * upstream has a revocation endpoint; the answer says when it has none.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { OAuthError } from '../../errors.ts'
import type { GrantSummary } from '../../grants/grant.ts'
import { audit, endedGrants } from '../../http/log.ts'
import { adminRoute, isoTime, optionalString, pageQuery, readBody, readParams, readQuery, type AdminAuthentication } from './route.ts'

const listQuery = z.object({ ...pageQuery, user: optionalString(1024), client_id: optionalString(8192) })

/** Exactly one of the two: a typo (`clientId`) is refused rather than read as "every grant". */
const revokeBody = z.union([
  z.strictObject({ client_id: z.string().min(1).max(8192) }),
  z.strictObject({ user: z.string().min(1).max(1024) }),
], { error: 'must be exactly one of { "client_id": "..." } or { "user": "..." }' })

const grantIdParams = z.object({ grant_id: z.string().min(1).max(200) })

export function grants(authenticate: AdminAuthentication) {
  return async function grantRoutes(app: FastifyInstance) {
    const gateway = app.gateway

    app.get('/admin/grants', adminRoute(gateway, 'grants.list', authenticate), async (request) => {
      const query = readQuery(request, listQuery)
      const page = await gateway.grants.list({ user: query.user, clientId: query.client_id }, { limit: query.limit, cursor: query.cursor })
      audit(request.log, { actor: 'admin', action: 'grants.list', count: page.items.length, ...(query.user ? { user: query.user } : {}), ...(query.client_id ? { client_id: query.client_id } : {}) })
      return { grants: page.items.map(grantAnswer), next_cursor: page.nextCursor ?? null }
    })

    app.delete('/admin/grants/:grant_id', adminRoute(gateway, 'grants.delete', authenticate), async (request, reply) => {
      const { grant_id: grantId } = readParams(request, grantIdParams)
      const outcome = await gateway.grants.revokeGrant(grantId, 'admin')
      if (!outcome.ended) throw new OAuthError(404, 'invalid_request', 'grant_id: no live grant has this id (it never existed, expired, or already ended)')
      audit(request.log, { actor: 'admin', action: 'grants.delete', grant_ids: [grantId], count: 1, upstream_revocation: outcome.upstreamRevocation })
      // A 204 has no body: the upstream's part is told in a header.
      return reply.code(204).header('upstream-revocation', outcome.upstreamRevocation).send()
    })

    app.post('/admin/grants/revoke', adminRoute(gateway, 'grants.revoke', authenticate), async (request) => {
      const body = readBody(request, revokeBody)
      const filter = 'client_id' in body ? { clientId: body.client_id } : { user: body.user }
      const ended = endedGrants()
      const revoked = await gateway.grants.revokeWhere(filter, 'revoked_by_admin', ended.add)
      audit(request.log, { actor: 'admin', action: 'grants.revoke', ...body, ...ended.entry, count: revoked, ...ended.upstream })
      return { revoked, ...ended.upstream }
    })
  }
}

export function grantAnswer(grant: GrantSummary) {
  return {
    grant_id: grant.grantId,
    client_id: grant.clientId,
    client_name: grant.clientName ?? null,
    client_name_unverified: grant.unverified,
    redirect_host: grant.redirectHost,
    user: grant.user?.id ?? null,
    user_name: grant.user?.name ?? null,
    user_email: grant.user?.email ?? null,
    scope: grant.scope ?? null,
    created_at: isoTime(grant.createdAt),
    last_used_at: isoTime(grant.lastUsedAt),
    expires_at: isoTime(grant.activeUntil),
    refresh_count: grant.refreshCount,
  }
}
