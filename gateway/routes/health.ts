/**
 * Liveness (the process answers) and readiness (the upstream's metadata is
 * loaded and the state store answers and takes writes: a Redis that is down,
 * or a demoted master that answers as a replica, is not ready), so a load
 * balancer sends no traffic to a replica that would answer 503.
 */
import type { FastifyInstance } from 'fastify'

export async function health(app: FastifyInstance) {
  app.get('/healthz', { config: { log: 'quiet', parameters: false } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { config: { log: 'quiet', parameters: false } }, async (_request, reply) => {
    const reason = await notReadyBecause(app)
    if (reason === undefined) return { status: 'ready' }
    return reply.code(503).header('cache-control', 'no-store').send({ status: 'unavailable', reason })
  })
}

async function notReadyBecause(app: FastifyInstance): Promise<string | undefined> {
  const { upstream, store } = app.gateway
  const [metadata, storeProblem] = await Promise.all([upstream.metadata().then(() => true, () => false), store.notReadyBecause()])
  if (!metadata) return 'the upstream metadata cannot be loaded'
  return storeProblem
}
