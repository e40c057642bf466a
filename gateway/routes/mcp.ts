/**
 * Front mode: the MCP endpoint (the path of MCP_RESOURCE), proxied to the
 * unchanged MCP server. The MCP server checks the token; the gateway only
 * refuses access tokens issued under a grant that was revoked or blocked
 * (it keeps their hashes until they expire, grants/registry.ts), which the
 * upstream may still accept. It adds what clients need to find the gateway:
 * the gateway's RFC 9728 `resource_metadata` in every 401 and 403 challenge,
 * in place of any the MCP server named (its own address is internal), and
 * CORS (the app-wide policy, which answers OPTIONS preflights without
 * authentication and exposes WWW-Authenticate and Mcp-Session-Id).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { GrantRegistry } from '../grants/registry.ts'
import { OAuthError, step } from '../errors.ts'
import { challengesToken, gatewayChallenge, isEventStream, requestHeadersFor, resourceMetadataUrl, responseHeadersFrom } from '../policy/proxy-headers.ts'
import type { McpProxy } from '../upstream/mcp-proxy.ts'

/** Streamable HTTP uses POST, GET (event stream) and DELETE (end of session); OPTIONS is CORS's. */
const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH']

export async function mcp(app: FastifyInstance) {
  const { config, mcpProxy, grants } = app.gateway
  if (!mcpProxy) return
  const publicUrl = new URL(config.mcpResource)
  const metadataUrl = resourceMetadataUrl(config.mcpResource)

  // Bodies are streamed to the MCP server as they arrive: nothing is parsed, buffered or size-limited here.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => done(null))

  app.route({
    method: METHODS,
    url: publicUrl.pathname,
    handler: async (request, reply) => {
      await refuseEndedGrantToken(grants, request, metadataUrl)
      return proxy(mcpProxy, request, reply, { publicUrl, metadataUrl })
    },
  })
}

/** RFC 6750 §3.1: a token of a grant that ended is invalid_token, with the challenge that leads the client back to sign-in. */
const refuseEndedGrantToken = step('checkGrant', async (grants: GrantRegistry, request: FastifyRequest, metadataUrl: string) => {
  const token = /^Bearer +([\x21-\x7E]+)\s*$/i.exec(request.headers.authorization ?? '')?.[1]
  if (token === undefined || !(await grants.isAccessTokenRevoked(token))) return
  const description = 'the access token was issued under a connection that has been revoked or blocked'
  throw new OAuthError(401, 'invalid_token', description, {
    headers: { 'www-authenticate': gatewayChallenge(`Bearer error="invalid_token", error_description="${description}"`, metadataUrl) },
  })
})

async function proxy(mcpProxy: McpProxy, request: FastifyRequest, reply: FastifyReply, where: { publicUrl: URL; metadataUrl: string }) {
  const clientGone = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) clientGone.abort(new Error('the client closed the connection'))
  })
  const query = request.url.indexOf('?')
  const response = await mcpProxy.forward({
    method: request.method,
    search: query < 0 ? '' : request.url.slice(query),
    headers: requestHeadersFor(request.headers, { clientAddress: request.socket.remoteAddress, publicUrl: where.publicUrl }),
    body: hasBody(request) ? request.raw : undefined,
    signal: clientGone.signal,
  })

  const headers = responseHeadersFrom(response.headers)
  // RFC 9728 §5.1, RFC 6750 §3.1: 401 (no or bad token) and 403 Bearer (insufficient_scope) challenges send clients to the gateway's metadata.
  if (challengesToken(response.status, headers['www-authenticate'])) headers['www-authenticate'] = gatewayChallenge(headers['www-authenticate'], where.metadataUrl)
  // Proxies in front of the gateway (nginx ingress) must not buffer an event stream either.
  if (isEventStream(headers)) headers['x-accel-buffering'] = 'no'
  reply.code(response.status).headers(headers)

  if (request.method === 'HEAD' || response.status === 204 || response.status === 304) {
    await response.body.dump()
    return reply.send()
  }
  // Fastify sends a stream's headers with its first chunk; an event stream may stay silent
  // for long, so its headers leave as soon as the stream is attached.
  reply.raw.once('pipe', () => reply.raw.flushHeaders())
  return reply.send(response.body)
}

/** RFC 9112 §6.3: a request has a body when it says so with Transfer-Encoding or a non-zero Content-Length. */
function hasBody(request: FastifyRequest) {
  return request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0
}
