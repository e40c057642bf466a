/**
 * Protected resource metadata (RFC 9728) for the MCP server, so that ingress
 * can route mcp.neonpanel.com's `/.well-known/oauth-protected-resource[/mcp]`
 * here and the MCP server itself stays unchanged.
 */
import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.ts'

const PATH = '/.well-known/oauth-protected-resource'

export async function protectedResource(app: FastifyInstance) {
  const { config } = app.gateway
  const resourcePath = new URL(config.mcpResource).pathname.replace(/\/$/, '')
  const body = JSON.stringify({
    resource: config.mcpResource,
    authorization_servers: [config.publicUrl],
    // offline_access is the authorization server's to offer (its own metadata lists it), never the resource's (SEP-2207).
    scopes_supported: config.scopes.supported.filter((scope) => scope !== 'offline_access'),
    bearer_methods_supported: ['header'],
  })
  const send = (reply: import('fastify').FastifyReply) =>
    reply.header('cache-control', 'public, max-age=300').type('application/json; charset=utf-8').send(body)

  app.get(PATH, { config: { log: 'quiet', parameters: false } }, async (_request, reply) => send(reply))
  // RFC 9728 §3.1: the resource's path follows the well-known suffix.
  app.get(`${PATH}/*`, { config: { log: 'quiet', parameters: false } }, async (request, reply) => {
    const suffix = `/${(request.params as { '*': string })['*']}`.replace(/\/$/, '')
    if (suffix !== resourcePath) throw new OAuthError(404, 'invalid_request', `no protected resource is configured at ${suffix}`)
    return send(reply)
  })
}
