/**
 * CORS. Browser-based clients (MCP Inspector in direct mode, web portals)
 * call metadata, registration, token and revocation from a page, and in front
 * mode the MCP endpoint too (sessions, event streams); no credentials ride on
 * CORS. Endpoints only a browser navigates to (`config: { cors: false }`:
 * authorize, callback, consent) and /metrics get none.
 *
 * Any origin is allowed and nothing varies by request, so an answer's CORS
 * headers are two fixed ones, added by a hook that each route allowing CORS
 * gets when it is added (and the not-found answer, so a browser probing a
 * path that does not exist reads the 404). @fastify/cors answers the
 * preflights, in a scope of its own: on every request it would read the
 * route's options and copy its own, which costs more than the metadata
 * endpoint's whole answer.
 */
import cors from '@fastify/cors'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

const ALLOW_ORIGIN = '*'
const EXPOSED_HEADERS = 'WWW-Authenticate, Mcp-Session-Id, Retry-After, X-Request-Id'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false on endpoints only a browser navigates to: no CORS headers. */
    cors?: false
  }
}

/** The headers of an answer to a cross-origin request (Fetch §3.2.3), as an onRequest hook. */
function corsHeaders(_request: FastifyRequest, reply: FastifyReply, done: () => void) {
  reply.header('access-control-allow-origin', ALLOW_ORIGIN).header('access-control-expose-headers', EXPOSED_HEADERS)
  done()
}

/** Register before the routes: the hook goes to each route added afterwards. */
export async function addCors(app: FastifyInstance) {
  // The not-found answer has no route to carry the hook; it gets the headers as early, before any check can fail it.
  app.addHook('onRequest', (request, reply, done) => (request.is404 ? corsHeaders(request, reply, done) : done()))
  app.addHook('onRoute', (route) => {
    if (route.config?.cors === false) return
    route.onRequest = [...(route.onRequest === undefined ? [] : [route.onRequest].flat()), corsHeaders]
  })
  await app.register(async (preflights) => {
    await preflights.register(cors, {
      origin: ALLOW_ORIGIN,
      methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      allowedHeaders: ['Authorization', 'Content-Type', 'MCP-Protocol-Version', 'Mcp-Session-Id', 'Last-Event-ID'],
      exposedHeaders: EXPOSED_HEADERS,
      credentials: false,
      maxAge: 600,
      // A bare OPTIONS (no Origin) gets the same empty 204, not a text/plain 400 outside the OAuth shape.
      strictPreflight: false,
    })
  })
}
