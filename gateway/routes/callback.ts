/**
 * Where the upstream sends the browser back. The sealed transaction in
 * `state` tells where the client waits; it is used once. The upstream's code
 * is sealed inside a short-lived, single-use gateway code bound to the client,
 * its redirect URI and its PKCE challenge, and the client gets it with its own
 * `state` and the gateway's `iss` (RFC 9207), never the upstream's.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Gateway } from '../context.ts'
import { OAuthError, step } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { blockedSignIn } from '../policy/blocks.ts'
import { describeSeconds, redirectBrowser } from '../http/pages.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { redact, sameIssuer } from '../upstream/errors.ts'
import type { Transaction } from './authorize.ts'

/** What a gateway authorization code holds. */
export interface CodeGrant {
  j: string
  c: string
  r: string
  cc: string
  /** The upstream's code, the gateway's verifier for it, and the upstream's `iss` (its metadata's spelling). */
  uc: string
  v: string
  i?: string | undefined
  /** The client's scope, in its own names. */
  sc: string
  res?: string | undefined
  /** The flow, for the log (log.ts). */
  f?: string | undefined
}

/** Authorization error codes the client may be told as they are (RFC 6749 §4.1.2.1, OpenID Connect §3.1.2.6). */
const FORWARDED_ERRORS = new Set([
  'access_denied', 'invalid_scope', 'temporarily_unavailable', 'server_error',
  'login_required', 'consent_required', 'interaction_required', 'account_selection_required',
])

export async function callback(app: FastifyInstance) {
  const gateway = app.gateway

  app.get('/callback', { config: { browser: true, cors: false } }, async (request, reply) => {
    const parameters = parametersOf(request.query)
    const transaction = await openTransaction(gateway, parameters)
    request.oauthClient = { handle: transaction.c }
    request.flow = transaction.f ?? null
    // A block made while the user was signing in: no code, and no redirect to the client.
    await checkNotBlocked(gateway, transaction)
    request.redirectBack = { redirectUri: transaction.r, state: transaction.s, issuer: gateway.config.publicUrl }

    checkUpstreamError(parameters)
    const upstreamIssuer = await checkUpstreamIssuer(gateway, parameters)
    const grant: CodeGrant = {
      j: randomUUID(),
      c: transaction.c,
      r: transaction.r,
      cc: transaction.cc,
      uc: required(parameters, 'code'),
      v: transaction.v,
      i: upstreamIssuer,
      sc: transaction.sc,
      res: transaction.res,
      f: transaction.f,
    }
    const code = gateway.sealer.seal('code', grant, gateway.config.lifetimes.codeSeconds)

    const target = new URL(transaction.r)
    target.searchParams.set('code', code)
    if (transaction.s !== undefined) target.searchParams.set('state', transaction.s)
    target.searchParams.set('iss', gateway.config.publicUrl)
    logStep(request, 'callback', 'code_issued', 'sending the code to the client')
    return redirectBrowser(request, reply, target.href)
  })
}

const openTransaction = step('openTransaction', async (gateway: Gateway, parameters: Parameters): Promise<Transaction> => {
  const transaction = gateway.sealer.open<Transaction>('transaction', optional(parameters, 'state', 8192))
  if (!transaction) {
    const lifetime = describeSeconds(gateway.config.lifetimes.transactionSeconds)
    throw new OAuthError(400, 'invalid_request', `This sign-in link is invalid or has expired (it lasts ${lifetime}).`)
  }
  if (!(await gateway.store.useOnce(`transaction:${transaction.j}`, gateway.config.lifetimes.transactionSeconds))) {
    throw new OAuthError(400, 'invalid_request', 'This sign-in was already completed (state is used once); start again from the app.')
  }
  return transaction
})

/** An authorization error from the upstream: passed on when the client can act on it, else the gateway's fault. */
const checkNotBlocked = step('checkNotBlocked', async (gateway: Gateway, transaction: Transaction) => {
  const block = await gateway.grants.isFlowBlocked(transaction.c, transaction.r)
  if (block) throw blockedSignIn(block)
})

const checkUpstreamError = step('checkUpstreamError', (parameters: Parameters) => {
  const error = optional(parameters, 'error', 256)
  if (error === undefined) return
  const description = optional(parameters, 'error_description', 1024)
  const upstream = { upstream: { call: 'authorization', error, error_description: description && redact(description) } }
  if (FORWARDED_ERRORS.has(error)) {
    throw new OAuthError(400, error, description ? redact(description) : `the NeonPanel sign-in ended with ${error}`, { details: upstream })
  }
  const hint = error === 'invalid_target' ? { hint: 'the upstream rejects the RFC 8707 resource parameter: set upstream.resource to drop' } : {}
  throw new OAuthError(502, 'server_error', `the NeonPanel sign-in refused the gateway's authorization request (${error}${description ? `: ${redact(description)}` : ''})`, {
    details: { ...upstream, ...hint },
  })
})

/**
 * RFC 9207: the upstream's `iss` must be its own issuer, and present when its
 * metadata says it sends one. A trailing slash either way is tolerated; the
 * metadata's spelling is what the code exchange then checks.
 */
const checkUpstreamIssuer = step('checkUpstreamIssuer', async (gateway: Gateway, parameters: Parameters): Promise<string | undefined> => {
  const iss = optional(parameters, 'iss')
  const metadata = await gateway.upstream.metadata()
  if (iss === undefined) {
    if (metadata.authorization_response_iss_parameter_supported) {
      throw new OAuthError(502, 'server_error', 'iss: the NeonPanel sign-in answered without its issuer, although its metadata says it sends one (RFC 9207 §2.4)')
    }
    return undefined
  }
  if (!sameIssuer(iss, metadata.issuer)) {
    throw new OAuthError(502, 'server_error', `iss: the authorization response names ${iss.slice(0, 200)} as its issuer, not ${metadata.issuer} (RFC 9207 §2.4)`)
  }
  return metadata.issuer
})
