/** The routing table: one file per endpoint. */
import type { FastifyInstance } from 'fastify'
import { admin } from './admin/index.ts'
import { authorize } from './authorize.ts'
import { callback } from './callback.ts'
import { connections } from './connections.ts'
import { consent } from './consent.ts'
import { health } from './health.ts'
import { mcp } from './mcp.ts'
import { metadata } from './metadata.ts'
import { metrics } from './metrics.ts'
import { protectedResource } from './protected-resource.ts'
import { register } from './register.ts'
import { revoke } from './revoke.ts'
import { token } from './token.ts'

export async function routes(app: FastifyInstance) {
  for (const plugin of [metadata, protectedResource, register, authorize, consent, connections, callback, token, revoke, health, metrics, mcp, admin]) {
    await app.register(plugin)
  }
}
