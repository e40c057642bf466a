/**
 * OAuth errors: one OAuthError with its status, code and description, the
 * subclasses whose behaviour differs, and the factories of the plain 400
 * codes. http/error-handler.ts turns them into responses.
 */
import type { FastifyError } from 'fastify'
import { StoreUnavailable } from './state/store.ts'

/** What the log line of a failure adds to the error itself: never sent to the client, and never a secret, code or token. */
export type LogDetails = Readonly<Record<string, unknown>>

/**
 * An error whose description is written for the client: it names the
 * parameter (or the upstream's answer) and the rule. Anything else is
 * answered with a fixed `server_error`.
 */
export class OAuthError extends Error {
  readonly status: number
  readonly error: string
  readonly headers: Record<string, string>
  /** What the user can try, on the error page; the error code's general hint otherwise. */
  readonly hint: string | undefined
  /** For the log line only, e.g. the upstream's own answer. */
  readonly details: LogDetails

  constructor(status: number, error: string, description: string, options: { cause?: unknown; headers?: Record<string, string>; hint?: string | undefined; details?: LogDetails } = {}) {
    super(description, { cause: options.cause })
    this.name = 'OAuthError'
    this.status = status
    this.error = error
    this.headers = options.headers ?? {}
    this.hint = options.hint
    this.details = options.details ?? {}
  }
}

/** The step each failure happened in, set by `step()`; the innermost step wins. */
const failedSteps = new WeakMap<object, string>()

/**
 * Names a step of an endpoint (`checkPkce`, `exchangeUpstreamCode`) so that
 * the log line of a failure inside it says where the request stopped.
 */
export function step<A extends unknown[], R>(name: string, work: (...args: A) => R): (...args: A) => R {
  const mark = (err: unknown) => {
    if (err !== null && typeof err === 'object' && !failedSteps.has(err)) failedSteps.set(err, name)
    return err
  }
  return (...args: A): R => {
    try {
      const result = work(...args)
      return (result instanceof Promise ? result.catch((err: unknown) => Promise.reject(mark(err))) : result) as R
    } catch (err) {
      throw mark(err)
    }
  }
}

/** The step a failure happened in, for its log line. */
export function failedStep(err: unknown): string | undefined {
  return err !== null && typeof err === 'object' ? failedSteps.get(err) : undefined
}

/** Who the log line of a failure is about, once the endpoint knows the client. */
export interface ClientNote {
  name?: string | undefined
  /** clientHandle(): short and stable, unlike the sealed client id. */
  handle: string
}

/** RFC 6749 §5.2: 401, with a challenge, so that clients re-register or fix their credentials. */
export class InvalidClient extends OAuthError {
  constructor(description: string) {
    super(401, 'invalid_client', description, { headers: { 'www-authenticate': 'Basic realm="oauth-gateway"' } })
  }
}

const plain = (error: string) => (description: string) => new OAuthError(400, error, description)
export const invalidRequest = plain('invalid_request')
export const invalidGrant = plain('invalid_grant')
export const invalidScope = plain('invalid_scope')
export const invalidTarget = plain('invalid_target')
export const unsupportedGrantType = plain('unsupported_grant_type')
export const unsupportedResponseType = plain('unsupported_response_type')
export const invalidRedirectUri = plain('invalid_redirect_uri')
export const invalidClientMetadata = plain('invalid_client_metadata')

/** A request that reached a replica while it shuts down: another replica (or this one restarted) will take it. */
export function shuttingDown(): OAuthError {
  return new OAuthError(503, 'temporarily_unavailable', 'the gateway is shutting down; send the request again', { headers: { connection: 'close', 'retry-after': '1' } })
}

/** Where an authorization error goes once the client's redirect URI is known to be safe. */
export interface RedirectBack {
  redirectUri: string
  state?: string | undefined
  issuer: string
}

/** Maps anything thrown to an OAuthError; unknown faults become a fixed `server_error`. */
export function toOAuthError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err
  // A Redis outage or failover lasts seconds: the client is told when to come back.
  if (err instanceof StoreUnavailable) return new OAuthError(503, 'temporarily_unavailable', 'the gateway state store is unavailable; try again shortly', { cause: err, headers: { 'retry-after': '1' } })
  const fastifyError = err as Partial<FastifyError>
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // Fastify's own client errors: bad JSON, unsupported media type, body too large, schema failures.
    const status = fastifyError.validation ? 400 : fastifyError.statusCode
    return new OAuthError(status, 'invalid_request', fastifyError.message ?? 'the request is malformed', { cause: err })
  }
  return new OAuthError(500, 'server_error', 'the gateway failed unexpectedly; the fault is logged', { cause: err })
}

/**
 * RFC 6749 §5.2 and §4.1.2.1: error_description is printable ASCII without
 * `"` or `\`. Descriptions quote client input, so they are made to fit and
 * kept short.
 */
export function describeForClient(message: string): string {
  const fitted = message
    .replace(/"/g, "'")
    .replace(/\\/g, '/')
    // The gateway's own descriptions cite specs as "RFC 7636 §4.6"; ASCII has no section sign.
    .replace(/§/g, 'section ')
    .replace(/…/g, '...')
    .replace(/[^\x20-\x7E]/g, '?')
  return fitted.length > 300 ? `${fitted.slice(0, 297)}...` : fitted
}

/** RFC 6749 §4.1.2.1 with RFC 9207's `iss`. */
export function authorizationErrorUrl(back: RedirectBack, err: OAuthError): string {
  const url = new URL(back.redirectUri)
  url.searchParams.set('error', err.error)
  url.searchParams.set('error_description', describeForClient(err.message))
  if (back.state !== undefined) url.searchParams.set('state', back.state)
  url.searchParams.set('iss', back.issuer)
  return url.href
}
