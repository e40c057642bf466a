/**
 * Token revocation (RFC 7009), brokered. A gateway refresh token is opened
 * and, only for the client it was issued to, its grant ended (the registry
 * revokes the upstream refresh token); one from before grants has its
 * upstream token revoked and is marked spent. Anything else is passed on as
 * an access token. Unknown tokens answer 200 (§2.2).
 */
import type { FastifyInstance } from 'fastify'
import { authenticateClient } from '../clients/authentication.ts'
import { clientHandle } from '../clients/registry.ts'
import { logStep } from '../http/log.ts'
import { optional, parametersOf, required } from '../http/params.ts'
import type { GrantRefreshToken, RefreshGrant } from './token.ts'

export async function revoke(app: FastifyInstance) {
  const gateway = app.gateway

  app.post('/revoke', { bodyLimit: gateway.config.server.bodyLimits.revoke, config: { limits: 'token' } }, async (request, reply) => {
    const parameters = parametersOf(request.body)
    const client = await authenticateClient(request, parameters, gateway)
    const token = required(parameters, 'token', 8192)
    optional(parameters, 'token_type_hint')

    const bound = gateway.sealer.open<GrantRefreshToken>('grant', token)
    const refresh = bound ? undefined : gateway.sealer.open<RefreshGrant>('refresh', token)
    request.flow = (bound ?? refresh)?.f ?? null
    // §2.1: a token issued to another client is not revoked, and the caller is not told so.
    const own = (bound ?? refresh)?.c === clientHandle(client.client_id)
    if (bound) {
      if (own) await gateway.grants.revokeGrant(bound.g, 'user')
    } else if (refresh) {
      if (own) {
        await gateway.grants.adoptLegacyToken(refresh.rt)
        await gateway.upstream.revokeToken(refresh.rt, 'refresh_token', client.upstream)
      }
    } else {
      await gateway.upstream.revokeToken(token, 'access_token', client.upstream)
    }
    logStep(request, 'revoke', 'revoked', 'token revoked', { token_type: bound || refresh ? 'refresh_token' : 'access_token' })
    return reply.code(200).header('cache-control', 'no-store').send({})
  })
}
