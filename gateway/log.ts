/**
 * What the gateway logs, and what it never does. Logs are JSON lines (pino,
 * through Fastify). Each request has an id (`reqId`): the caller's
 * X-Request-Id when it is a plain token, a new one otherwise, sent back in
 * X-Request-Id. One OAuth flow spans several requests (authorize, consent,
 * callback, token, refreshes); the id of the /authorize request that started
 * it travels sealed in state, code and refresh token, so every line of the
 * flow carries it as `flow`. Requests are logged by path only, no header is
 * logged, and known secret fields are redacted wherever a line puts them.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'

/** A request id the caller may choose: short, and nothing that could forge a log line. */
const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{8,64}$/

export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && CALLER_REQUEST_ID.test(given) ? given : randomUUID()
}

/**
 * Field names whose values are secrets, redacted at the top of a line and one
 * level down. (`code` is not among them: an error's `code` is an errno, and no
 * line carries an authorization code.)
 */
const SECRET_FIELDS = [
  'authorization', 'cookie', 'set-cookie', 'client_secret', 'client_assertion', 'code_verifier',
  'access_token', 'refresh_token', 'id_token', 'token', 'password', 'secret', 'clientSecret', 'registrationToken',
]

const pathOf = (field: string) => (/^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field}"]`)
export const REDACT_PATHS = SECRET_FIELDS.flatMap((field) => [pathOf(field), `*${pathOf(field).startsWith('[') ? '' : '.'}${pathOf(field)}`])

/** Logger settings for production. */
export const LOGGER_OPTIONS = {
  level: 'info',
  redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  serializers: {
    req: (request: { method: string; url: string; id: string }) => ({ method: request.method, path: request.url.split('?')[0] }),
  },
} as const

declare module 'fastify' {
  interface FastifyRequest {
    /** The OAuth flow this request belongs to, once known: the request id of its /authorize. */
    flow: string | null
  }
}

/**
 * The one line an OAuth step writes when it succeeds: the step, its outcome,
 * the client and the flow. Failures get theirs from the error handler.
 */
export function logStep(request: FastifyRequest, step: string, outcome: string, message: string, details: Record<string, unknown> = {}) {
  request.log.info({ step, outcome, client: request.oauthClient ?? undefined, flow: request.flow ?? undefined, ...details }, message)
}
