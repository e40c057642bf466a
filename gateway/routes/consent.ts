/**
 * The consent page's answer. The form carries the sealed pending authorization
 * and a CSRF token bound to it and to this browser's consent cookie; both are
 * checked, and the token is used once, before anything happens. Approve
 * remembers the approval in the cookie and sends the browser upstream; Deny
 * sends `access_denied` back to the client (RFC 6749 §4.1.2.1). Until the
 * answer is known to be genuine, errors are a page, never a redirect.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.ts'
import type { ConsentCookie, PendingAuthorization } from '../policy/consent.ts'
import { OAuthError, step } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { blockedSignIn } from '../policy/blocks.ts'
import { describeSeconds } from '../http/pages.ts'
import { optional, parametersOf, type Parameters } from '../http/params.ts'
import { fromOtherSite } from '../policy/same-origin.ts'
import { sendToUpstream } from './authorize.ts'

const START_AGAIN = 'Go back to the app and start connecting again.'

export async function consent(app: FastifyInstance) {
  const gateway = app.gateway

  app.post('/consent', { config: { browser: true, cors: false } }, async (request, reply) => {
    const parameters = parametersOf(request.body)
    checkSameOrigin(gateway, request)
    const pending = openPending(gateway, parameters)
    const decision = readDecision(parameters)
    const cookie = await checkCsrfToken(gateway, request, parameters, pending)
    // A block made while the page was shown: not even a denial goes back to the client.
    await checkNotBlocked(gateway, pending)
    request.redirectBack = { redirectUri: pending.r, state: pending.s, issuer: gateway.config.publicUrl }
    request.oauthClient = { handle: pending.c }
    request.flow = pending.f ?? null

    if (decision === 'deny') {
      logStep(request, 'consent', 'denied', 'the user denied the client')
      throw new OAuthError(400, 'access_denied', 'the user denied the request')
    }
    logStep(request, 'consent', 'approved', 'the user approved the client')
    reply.header('set-cookie', gateway.consent.setCookie(gateway.consent.withApproval(cookie, pending.a, pending.sc, pending.c)))
    return sendToUpstream(gateway, request, reply, pending)
  })
}

/** The answer must come from the consent page itself (policy/same-origin.ts). */
function checkSameOrigin(gateway: Gateway, request: FastifyRequest) {
  if (fromOtherSite(gateway.config.publicUrl, request.headers)) {
    throw new OAuthError(400, 'invalid_request', 'This answer was sent from another website, not from the consent page, so it was ignored.', { hint: START_AGAIN })
  }
}

function openPending(gateway: Gateway, parameters: Parameters): PendingAuthorization {
  const pending = gateway.consent.openPending(optional(parameters, 'pending', 8192))
  if (!pending) {
    const lifetime = describeSeconds(gateway.config.lifetimes.transactionSeconds)
    throw new OAuthError(400, 'invalid_request', `This consent page has expired or is broken (a page lasts ${lifetime}).`, { hint: START_AGAIN })
  }
  return pending
}

function readDecision(parameters: Parameters): 'approve' | 'deny' {
  const decision = optional(parameters, 'decision', 16)
  if (decision !== 'approve' && decision !== 'deny') throw new OAuthError(400, 'invalid_request', 'The answer must be Approve or Deny.', { hint: START_AGAIN })
  return decision
}

/** The token must be this page's and this browser's, and unused (a replayed answer is refused). */
async function checkCsrfToken(gateway: Gateway, request: FastifyRequest, parameters: Parameters, pending: PendingAuthorization): Promise<ConsentCookie> {
  const cookie = gateway.consent.readCookie(request.headers.cookie)
  if (!cookie || !gateway.consent.csrfMatches(optional(parameters, 'csrf', 8192), pending, cookie)) {
    throw new OAuthError(400, 'invalid_request', 'This answer could not be verified as coming from this browser: the consent cookie is missing or does not match the page.', {
      hint: 'Allow cookies for this site, then go back to the app and start connecting again.',
    })
  }
  if (!(await gateway.store.useOnce(`consent:${pending.j}`, gateway.config.lifetimes.transactionSeconds))) {
    throw new OAuthError(400, 'invalid_request', 'This consent page was already answered; an answer counts once.', { hint: START_AGAIN })
  }
  return cookie
}

const checkNotBlocked = step('checkNotBlocked', async (gateway: Gateway, pending: PendingAuthorization) => {
  const block = await gateway.grants.isFlowBlocked(pending.c, pending.r)
  if (block) throw blockedSignIn(block)
})
