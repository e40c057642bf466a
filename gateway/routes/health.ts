/**
 * Liveness (the process answers) and readiness (the upstream's metadata is
 * loaded and the state store answers), so a load balancer sends no traffic to
 * a replica that would answer 503. The same checks feed the
 * oauth_gateway_ready metric at each scrape (app.ts).
 */
import type { FastifyInstance } from 'fastify'
import type { Gateway } from '../context.ts'
import type { Readiness } from '../http/metrics.ts'

export async function health(app: FastifyInstance) {
  app.get('/healthz', { config: { log: 'quiet', parameters: false } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { config: { log: 'quiet', parameters: false } }, async (_request, reply) => {
    const reason = notReadyBecause(await checkReadiness(app.gateway))
    if (reason === undefined) return { status: 'ready' }
    return reply.code(503).header('cache-control', 'no-store').send({ status: 'unavailable', reason })
  })
}

/** Runs the readiness checks at once: a stalled store costs one command timeout. */
export async function checkReadiness(gateway: Pick<Gateway, 'upstream' | 'store'>): Promise<Readiness> {
  const [upstreamMetadata, store] = await Promise.all([gateway.upstream.metadata().then(() => true, () => false), gateway.store.ping()])
  return { upstream_metadata: upstreamMetadata, store }
}

function notReadyBecause(readiness: Readiness): string | undefined {
  if (!readiness.upstream_metadata) return 'the upstream metadata cannot be loaded'
  if (!readiness.store) return 'the state store does not answer'
  return undefined
}
