/**
 * The Admin API, for ops: on only when env ADMIN_TOKEN is set; without it
 * nothing is registered and every /admin path is 404 like any unknown path.
 * Every call needs the token as a bearer token (route.ts), JSON in and out,
 * errors in the OAuth shape from the one error handler. One file per group:
 * clients.ts, grants.ts, blocks.ts.
 */
import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../../errors.ts'
import { blocks } from './blocks.ts'
import { clients } from './clients.ts'
import { grants } from './grants.ts'
import { adminAuthentication, adminRoute } from './route.ts'

export async function admin(app: FastifyInstance) {
  const token = app.gateway.config.admin.token
  if (token === undefined) return
  const authenticate = adminAuthentication(token)
  for (const group of [clients, grants, blocks]) await app.register(group(authenticate))
  // Within the API, a wrong path or method is told only to whoever holds the token.
  const unknown = adminRoute(app.gateway, 'unknown', authenticate)
  const noSuchEndpoint = (request: { method: string; url: string }) => {
    throw new OAuthError(404, 'invalid_request', `no such Admin API endpoint: ${request.method} ${request.url.split('?')[0]}`)
  }
  app.all('/admin', unknown, noSuchEndpoint)
  app.all('/admin/*', unknown, noSuchEndpoint)
}
