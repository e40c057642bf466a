/**
 * CORS. Browser-based clients (MCP Inspector in direct mode, web portals)
 * call metadata, registration, token and revocation from a page, and in front
 * mode the MCP endpoint too (sessions, event streams); no credentials ride on
 * CORS. Endpoints only a browser navigates to (`config: { cors: false }`:
 * authorize, callback, consent) and /metrics get none.
 *
 * Any origin is allowed and nothing varies by request, so an answer's CORS
 * headers are fixed ones: Access-Control-Allow-Origin, set when the request
 * arrives on a route that allows CORS (app.ts), and on the not-found answer,
 * so a browser probing a path that does not exist reads the 404; and
 * Access-Control-Expose-Headers wherever the answer carries the request id
 * (log.ts). @fastify/cors answers the
 * preflights, in a scope of its own: on every request it would read the
 * route's options and copy its own, which costs more than the metadata
 * endpoint's whole answer.
 */
import cors from '@fastify/cors'
import type { FastifyInstance, FastifyReply } from 'fastify'

const ALLOW_ORIGIN = '*'
const EXPOSED_HEADERS = 'WWW-Authenticate, Mcp-Session-Id, Retry-After, X-Request-Id'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false on endpoints only a browser navigates to: no CORS headers. */
    cors?: false
  }
}

/** Lets a page of any origin read the answer (Fetch §3.2.3). */
export function allowCrossOrigin(reply: FastifyReply) {
  reply.header('access-control-allow-origin', ALLOW_ORIGIN)
}

/** Lets it read the headers beyond the safelisted ones too: the request id, a challenge, a session, Retry-After. */
export function exposeHeaders(reply: FastifyReply) {
  reply.header('access-control-expose-headers', EXPOSED_HEADERS)
}

/** The preflights' answers. */
export async function answerPreflights(app: FastifyInstance) {
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
