/** Liveness (the process answers) and readiness (the upstream's metadata is loaded). */
import type { FastifyInstance } from 'fastify'

export async function health(app: FastifyInstance) {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    try {
      await app.gateway.upstream.metadata()
      return { status: 'ready' }
    } catch {
      return reply.code(503).header('cache-control', 'no-store').send({ status: 'unavailable', reason: 'the upstream metadata cannot be loaded' })
    }
  })
}
