/**
 * What every Admin API route shares: the bearer check of ADMIN_TOKEN, the
 * count per action in /metrics, JSON bodies and queries read with zod (a
 * failure is `invalid_request` naming the field), and times as ISO 8601.
 * The routes themselves are clients.ts, grants.ts and blocks.ts.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify'
import { z } from 'zod'
import type { Gateway } from '../../context.ts'
import { OAuthError, invalidRequest } from '../../errors.ts'
import { MAX_PAGE_SIZE } from '../../grants/registry.ts'

/** What the admin metric counts by: each route names its action, a closed set. */
export type AdminAction =
  | 'clients.list'
  | 'grants.list'
  | 'grants.delete'
  | 'grants.revoke'
  | 'blocks.create'
  | 'blocks.list'
  | 'blocks.delete'
  | 'unknown'

const digest = (value: string) => createHash('sha256').update(value).digest()

export type AdminAuthentication = ReturnType<typeof adminAuthentication>

/**
 * The onRequest hook of every admin route, RFC 6750 §2.1: `Authorization:
 * Bearer <ADMIN_TOKEN>`. The digests of the given and the expected token are
 * compared in constant time, so neither the token nor its length leaks
 * through the time the answer takes.
 */
export function adminAuthentication(token: string) {
  const expected = digest(token)
  return function authenticateAdmin(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
    // What ops read about clients and users is kept by no cache on the way.
    reply.header('cache-control', 'no-store')
    const header = request.headers.authorization
    const given = typeof header === 'string' ? /^Bearer +([^\s]+) *$/i.exec(header)?.[1] : undefined
    if (given !== undefined && timingSafeEqual(digest(given), expected)) return done()
    // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
    const challenge = given === undefined ? 'Bearer realm="oauth-gateway-admin"' : 'Bearer realm="oauth-gateway-admin", error="invalid_token"'
    const description = given === undefined ? 'the Admin API needs Authorization: Bearer <ADMIN_TOKEN>' : 'the bearer token is not the ADMIN_TOKEN'
    done(new OAuthError(401, 'invalid_token', description, { headers: { 'www-authenticate': challenge } }))
  }
}

/**
 * A route's options: never under CORS (no page may call the Admin API), the
 * admin bearer check before anything is read, the admin body limit, and the
 * count of its answers by action and outcome.
 */
export function adminRoute(gateway: Gateway, action: AdminAction, authenticate: AdminAuthentication): RouteShorthandOptions {
  return {
    bodyLimit: gateway.config.server.bodyLimits.admin,
    config: { cors: false },
    onRequest: authenticate,
    onResponse(_request, reply, done) {
      gateway.metrics.adminRequest(action, reply.statusCode)
      done()
    },
  }
}

/** A JSON body checked against `schema`; anything else (a form, no body, a wrong field) is refused before anything changes. */
export function readBody<S extends z.ZodType>(request: FastifyRequest, schema: S): z.infer<S> {
  const type = request.headers['content-type']
  if (typeof type !== 'string' || !/^application\/json\s*(;|$)/i.test(type)) {
    throw new OAuthError(415, 'invalid_request', 'the body must be JSON (Content-Type: application/json)')
  }
  return parse(schema, request.body, 'the body')
}

/** The path parameters checked against `schema`. */
export function readParams<S extends z.ZodType>(request: FastifyRequest, schema: S): z.infer<S> {
  return parse(schema, request.params, 'the path')
}

/** The query string checked against `schema`. */
export function readQuery<S extends z.ZodType>(request: FastifyRequest, schema: S): z.infer<S> {
  return parse(schema, request.query, 'the query')
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = issue.path.join('.')
  throw invalidRequest(field ? `${field}: ${issue.message}` : `${what}: ${issue.message}`)
}

/** Seconds since the epoch as ISO 8601, the way every admin answer writes times. */
export function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString()
}

/** `limit` (1 to 1000, default 100) and `cursor` (from the previous page's `next_cursor`); an empty one is absent. */
export const pageQuery = {
  limit: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z
      .string({ error: `must be given once, a whole number from 1 to ${MAX_PAGE_SIZE}` })
      .regex(/^\d{1,7}$/, `must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
      .transform(Number)
      .pipe(z.number().int().min(1, `must be a whole number from 1 to ${MAX_PAGE_SIZE}`).max(MAX_PAGE_SIZE, `must be at most ${MAX_PAGE_SIZE}`))
      .optional(),
  ),
  cursor: optionalString(1024),
}

/** A query parameter given once, or absent (an empty one too). */
export function optionalString(maxLength: number) {
  return z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.string({ error: 'must be given once, as a single value' }).max(maxLength, `must be at most ${maxLength} characters`).optional(),
  )
}
