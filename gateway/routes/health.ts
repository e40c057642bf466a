/**
 * Liveness (the process answers) and readiness (the upstream's metadata is
 * loaded and the state store answers and takes writes: a Redis that is down,
 * or a demoted master that answers as a replica, is not ready), so a load
 * balancer sends no traffic to a replica that would answer 503. The same
 * checks feed the oauth_gateway_ready metric at each scrape (app.ts).
 */
import type { FastifyInstance } from 'fastify'
import type { Gateway } from '../context.ts'
import type { Readiness } from '../http/metrics.ts'

export async function health(app: FastifyInstance) {
  app.get('/healthz', { config: { log: 'quiet', parameters: false } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { config: { log: 'quiet', parameters: false } }, async (_request, reply) => {
    const { reason } = await readiness(app.gateway)
    if (reason === undefined) return { status: 'ready' }
    return reply.code(503).header('cache-control', 'no-store').send({ status: 'unavailable', reason })
  })
}

/** Runs the readiness checks at once: a stalled store costs one command timeout. */
export async function checkReadiness(gateway: Pick<Gateway, 'upstream' | 'store'>): Promise<Readiness> {
  return (await readiness(gateway)).checks
}

/** The checks, and why the replica is not ready when one fails. */
async function readiness(gateway: Pick<Gateway, 'upstream' | 'store'>): Promise<{ checks: Readiness; reason: string | undefined }> {
  const [upstreamMetadata, storeProblem] = await Promise.all([gateway.upstream.metadata().then(() => true, () => false), gateway.store.notReadyBecause()])
  const reason = upstreamMetadata ? storeProblem : 'the upstream metadata cannot be loaded'
  return { checks: { upstream_metadata: upstreamMetadata, store: storeProblem === undefined }, reason }
}
