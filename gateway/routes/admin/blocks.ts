/**
 * Blocks, for ops: POST /admin/blocks refuses a client by its id, every
 * client redirecting to a host, or every client whose name matches a
 * pattern, and ends the grants it matches; GET /admin/blocks lists them,
 * DELETE /admin/blocks/{block_id} lifts one. A block applies on every
 * replica within a second (the registry's cache): /authorize, /token and
 * /register refuse what it matches.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { OAuthError, invalidRequest } from '../../errors.ts'
import type { Block, BlockKind } from '../../grants/grant.ts'
import { audit, endedGrants } from '../../http/log.ts'
import { checkBlockValue } from '../../policy/blocks.ts'
import { adminRoute, isoTime, readBody, readParams, type AdminAuthentication } from './route.ts'

const reason = z.string({ error: 'is required: say why, for the log and for the people the block refuses' }).trim().min(1, 'must not be empty').max(500, 'must be at most 500 characters')

/** One of the three keys and a reason; anything else is refused. */
const createBody = z.union([
  z.strictObject({ client_id: z.string(), reason }),
  z.strictObject({ redirect_host: z.string(), reason }),
  z.strictObject({ client_name_pattern: z.string(), reason }),
], { error: 'must be { "reason": "..." } with exactly one of client_id, redirect_host, client_name_pattern (strings)' })

const blockIdParams = z.object({ block_id: z.string().min(1).max(200) })

export function blocks(authenticate: AdminAuthentication) {
  return async function blockRoutes(app: FastifyInstance) {
    const gateway = app.gateway

    app.post('/admin/blocks', adminRoute(gateway, 'blocks.create', authenticate), async (request, reply) => {
      const body = readBody(request, createBody)
      const { kind, value } = ruleOf(body)
      const checked = checkBlockValue(kind, value)
      if (!checked.ok) throw invalidRequest(checked.reason)
      const endedIds = endedGrants()
      const { block, ended } = await gateway.grants.addBlock({ kind, value: checked.value, reason: body.reason }, endedIds.add)
      audit(request.log, { actor: 'admin', action: 'blocks.create', block_id: block.blockId, kind, value: block.value, reason: block.reason, ...endedIds.entry, count: ended, ...endedIds.upstream })
      return reply.code(201).send({ block_id: block.blockId, revoked: ended, ...endedIds.upstream })
    })

    app.get('/admin/blocks', adminRoute(gateway, 'blocks.list', authenticate), async (request) => {
      const listed = await gateway.grants.listBlocks()
      audit(request.log, { actor: 'admin', action: 'blocks.list', count: listed.length })
      return { blocks: listed.map(blockAnswer) }
    })

    app.delete('/admin/blocks/:block_id', adminRoute(gateway, 'blocks.delete', authenticate), async (request, reply) => {
      const { block_id: blockId } = readParams(request, blockIdParams)
      if (!(await gateway.grants.removeBlock(blockId))) throw new OAuthError(404, 'invalid_request', 'block_id: no block has this id')
      audit(request.log, { actor: 'admin', action: 'blocks.delete', block_id: blockId })
      return reply.code(204).send()
    })
  }
}

function ruleOf(body: z.infer<typeof createBody>): { kind: BlockKind; value: string } {
  if ('client_id' in body) return { kind: 'client_id', value: body.client_id }
  if ('redirect_host' in body) return { kind: 'redirect_host', value: body.redirect_host }
  return { kind: 'client_name_pattern', value: body.client_name_pattern }
}

/** A block as it was asked for: its key and value, the reason, when. */
function blockAnswer(block: Block) {
  return { block_id: block.blockId, [block.kind]: block.value, reason: block.reason, created_at: isoTime(block.createdAt) }
}
