/**
 * The one boundary where upstream failures become gateway errors. An OAuth
 * error from the upstream keeps its code; a timeout is 504 and an unreachable
 * upstream 503, both `temporarily_unavailable`; anything that is not an OAuth
 * response (an HTML page, broken or oversized JSON, a body cut off, JSON
 * without `error`) is 502 `server_error`. The upstream's answer goes to the
 * log (see Exchange), never to the client.
 */
import { ResponseBodyError } from 'openid-client'
import { OAuthError } from '../errors.ts'
import { UpstreamFault, type Exchange, type FaultKind } from './fetch.ts'

const SERVICE = 'the NeonPanel sign-in service'

/** The UpstreamFault along an error's cause chain (openid-client wraps what its fetch throws). */
function faultIn(err: unknown): UpstreamFault | undefined {
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    if (current instanceof UpstreamFault) return current
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

function fromFault(kind: FaultKind, err: unknown): OAuthError {
  switch (kind) {
    case 'timeout':
      return new OAuthError(504, 'temporarily_unavailable', `${SERVICE} did not answer in time`, { cause: err })
    case 'unreachable':
      return new OAuthError(503, 'temporarily_unavailable', `${SERVICE} cannot be reached`, { cause: err })
    case 'bad_answer':
      return new OAuthError(502, 'server_error', `${SERVICE} gave an answer that is not a valid OAuth response`, { cause: err })
  }
}

/**
 * Maps any failure of an upstream call to the error the client sees. `exchange`
 * is what the upstream answered, when it answered: a 503 or 504 from it (a
 * gateway or maintenance page in front of NeonPanel) keeps its meaning.
 */
export function translateUpstreamError(err: unknown, exchange: Exchange = {}): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof ResponseBodyError) return fromOAuthErrorBody(err)
  const fault = faultIn(err)
  if (fault) return fromFault(fault.kind, err)
  if (exchange.status === 503) return fromFault('unreachable', err)
  if (exchange.status === 504) return fromFault('timeout', err)
  if (exchange.status === 401) {
    return new OAuthError(502, 'server_error', `${SERVICE} refused the gateway credentials`, { cause: err })
  }
  return fromFault('bad_answer', err)
}

function fromOAuthErrorBody(err: ResponseBodyError): OAuthError {
  if (err.error === 'invalid_client') {
    // The upstream refused the gateway's own credentials. Passing invalid_client on
    // would make clients re-register forever; this is the gateway's fault, not theirs.
    return new OAuthError(502, 'server_error', `${SERVICE} refused the gateway credentials`, { cause: err })
  }
  if (err.error === 'temporarily_unavailable') {
    return new OAuthError(503, 'temporarily_unavailable', describe(err.error_description) ?? `${SERVICE} is unavailable`, { cause: err })
  }
  if (err.error.length > 128 || !/^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/.test(err.error)) {
    // RFC 6749 §5.2: an error code outside this set is not one a client could act on.
    return fromFault('bad_answer', err)
  }
  const status = err.status >= 500 ? 502 : 400
  return new OAuthError(status, err.error, describe(err.error_description) ?? `${SERVICE} answered ${err.error}`, { cause: err })
}

/** RFC 6749 §5.2: error_description is printable ASCII without `"` or `\`; anything else is dropped. */
function describe(description: unknown): string | undefined {
  return typeof description === 'string' && description.length <= 1024 && /^[\x20-\x21\x23-\x5B\x5D-\x7E]*$/.test(description) ? description : undefined
}
