/**
 * GET /metrics, Prometheus text format (metrics.ts). With env METRICS_TOKEN
 * set, a scraper must send it as a bearer token; without it, /metrics is for
 * the private network only and the public ingress must not route it.
 */
import { timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.ts'

export async function metrics(app: FastifyInstance) {
  const { config, metrics: registry } = app.gateway
  if (!config.metrics.enabled) return
  const expected = config.metrics.token === undefined ? undefined : Buffer.from(`Bearer ${config.metrics.token}`)

  app.get('/metrics', { config: { cors: false, log: 'quiet', parameters: false } }, async (request, reply) => {
    if (expected !== undefined) {
      const given = Buffer.from(request.headers.authorization ?? '')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new OAuthError(401, 'invalid_token', 'metrics: send the METRICS_TOKEN as a bearer token', { headers: { 'www-authenticate': 'Bearer realm="metrics"' } })
      }
    }
    return reply.header('content-type', registry.contentType).header('cache-control', 'no-store').send(await registry.text())
  })
}
