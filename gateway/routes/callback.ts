/**
 * Where the upstream sends the browser back. The sealed transaction in
 * `state` tells where the client waits; it is used once. The upstream's code
 * is sealed inside a short-lived, single-use gateway code bound to the client,
 * its redirect URI and its PKCE challenge, and the client gets it with its own
 * `state` and the gateway's `iss` (RFC 9207), never the upstream's. A `state`
 * that is the connected-apps page's own sign-in is finished by that page
 * (routes/connections.ts).
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Gateway } from '../context.ts'
import { OAuthError, step } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { blockedSignIn } from '../policy/blocks.ts'
import { describeSeconds, redirectBrowser } from '../http/pages.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { checkUpstreamError, checkUpstreamIssuer } from '../upstream/authorization-response.ts'
import type { Transaction } from './authorize.ts'
import { finishPageSignIn } from './connections.ts'

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

export async function callback(app: FastifyInstance) {
  const gateway = app.gateway

  app.get('/callback', { config: { browser: true, cors: false } }, async (request, reply) => {
    const parameters = parametersOf(request.query)
    const signIn = gateway.userSessions.openSignIn(optional(parameters, 'state', 8192))
    if (signIn) return finishPageSignIn(gateway, request, reply, signIn, parameters)
    const transaction = await openTransaction(gateway, parameters)
    request.oauthClient = { handle: transaction.c }
    request.flow = transaction.f ?? null
    // A block made while the user was signing in: no code, and no redirect to the client.
    await checkNotBlocked(gateway, transaction)
    request.redirectBack = { redirectUri: transaction.r, state: transaction.s, issuer: gateway.config.publicUrl }

    checkUpstreamError(parameters)
    const upstreamIssuer = await checkUpstreamIssuer(gateway.upstream, parameters)
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

/** A block made while the sign-in was under way stops it here, with the page naming the reason. */
const checkNotBlocked = step('checkNotBlocked', async (gateway: Gateway, transaction: Transaction) => {
  const block = await gateway.grants.isFlowBlocked(transaction.c, transaction.r)
  if (block) throw blockedSignIn(block)
})
