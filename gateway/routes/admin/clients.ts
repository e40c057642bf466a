/**
 * GET /admin/clients: every client the gateway has met (it registered,
 * presented a metadata document, or holds a grant), a page at a time, with
 * its live grants and whether a block refuses it.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { ClientSummary } from '../../grants/grant.ts'
import type { GrantRegistry } from '../../grants/registry.ts'
import { audit } from '../../http/log.ts'
import { adminRoute, isoTime, pageQuery, readQuery, type AdminAuthentication } from './route.ts'

const listQuery = z.object(pageQuery)

export function clients(authenticate: AdminAuthentication) {
  return async function clientRoutes(app: FastifyInstance) {
    const gateway = app.gateway

    app.get('/admin/clients', adminRoute(gateway, 'clients.list', authenticate), async (request) => {
      const query = readQuery(request, listQuery)
      const page = await gateway.grants.listClients({ limit: query.limit, cursor: query.cursor })
      const listed = await Promise.all(page.items.map((client) => clientAnswer(gateway.grants, client)))
      audit(request.log, { actor: 'admin', action: 'clients.list', count: listed.length })
      return { clients: listed, next_cursor: page.nextCursor ?? null }
    })
  }
}

async function clientAnswer(grants: GrantRegistry, client: ClientSummary) {
  const block = await grants.isBlocked({ clientId: client.clientId, redirectUris: client.redirectUris, clientName: client.clientName })
  return {
    client_id: client.clientId,
    client_name: client.clientName ?? null,
    redirect_uris: client.redirectUris,
    application_type: client.applicationType ?? null,
    first_seen_at: isoTime(client.firstSeenAt),
    last_used_at: isoTime(client.lastUsedAt),
    grants: client.grants,
    blocked: block !== undefined,
    ...(block ? { block_id: block.blockId } : {}),
  }
}
