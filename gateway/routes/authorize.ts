/**
 * The authorization endpoint. Until the client and its redirect URI are
 * known to be good, every error is an HTML page (never a redirect, RFC 6749
 * §4.1.2.1); after that, errors go back to the client. Unless ops trust the
 * client or this browser already approved it for these scopes (and the client
 * did not send `prompt=consent`), the user is asked first (the consent page,
 * answered at /consent). The browser then goes to the upstream with the
 * gateway's own callback, its own PKCE, and the transaction sealed into
 * `state`.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.ts'
import type { RegisteredClient } from '../clients/client.ts'
import { clientHandle } from '../clients/registry.ts'
import { approvalKey, type ConsentCookie, type PendingAuthorization } from '../policy/consent.ts'
import { OAuthError, invalidRequest, step, unsupportedResponseType } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { cspSource, pageHeaders, redirectBrowser, renderConsentPage } from '../http/pages.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { isValidChallenge, newVerifier, s256 } from '../policy/pkce.ts'
import { presetOf, refusalReason } from '../policy/presets.ts'
import { normaliseRedirectUri, sameRedirectUri } from '../policy/redirect-uri.ts'
import { checkResource } from '../policy/resource.ts'
import { resolveClientScope, upstreamScope } from '../policy/scopes.ts'

/** What the gateway remembers across the upstream round trip, sealed into the upstream `state`. */
export interface Transaction {
  /** Single-use id. */
  j: string
  /** clientHandle() of the client. */
  c: string
  /** The client's redirect URI and state. */
  r: string
  s?: string | undefined
  /** The client's PKCE challenge (S256). */
  cc: string
  /** The gateway's own PKCE verifier towards the upstream. */
  v: string
  /** The scope the client asked for, in its own names, and the RFC 8707 resource it named. */
  sc: string
  res?: string | undefined
  /** The flow, for the log (log.ts). */
  f?: string | undefined
}

export async function authorize(app: FastifyInstance) {
  const gateway = app.gateway
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const parameters = parametersOf(request.method === 'POST' ? request.body : request.query)
    const client = await findClient(gateway, request, parameters)
    const redirectUri = checkRedirectUri(gateway, client, parameters)
    const state = optional(parameters, 'state', 2048)
    request.redirectBack = { redirectUri, state, issuer: gateway.config.publicUrl }

    checkResponseType(parameters)
    const codeChallenge = checkPkce(parameters)
    const scope = resolveScope(gateway, parameters)
    const resource = checkResourceParameter(gateway, parameters)
    const askAgain = promptsForConsent(parameters)

    const pending: PendingAuthorization = {
      j: randomUUID(),
      c: clientHandle(client.client_id),
      a: approvalKey(client.client_id, redirectUri, scope),
      r: redirectUri,
      s: state,
      cc: codeChallenge,
      sc: scope,
      us: upstreamScope(gateway.config.scopes, scope, { refreshTokens: client.grant_types.includes('refresh_token') }),
      res: resource,
      u: client.upstream?.clientId,
      f: request.id,
    }
    request.flow = pending.f!
    gateway.metrics.flowStarted(presetOf(redirectUri))
    const cookie = gateway.consent.readCookie(request.headers.cookie)
    if (gateway.consent.isTrusted(client.client_id, new URL(redirectUri)) || (!askAgain && gateway.consent.hasApproval(cookie, pending.a))) {
      logStep(request, 'authorize', 'sent_upstream', 'sending the browser to the upstream')
      return sendToUpstream(gateway, request, reply, pending)
    }
    return askForConsent(gateway, request, reply, client, pending, cookie ?? gateway.consent.newCookie())
  }

  app.get('/authorize', { config: { browser: true, cors: false, limits: 'authorize' } }, handler)
  app.post('/authorize', { config: { browser: true, cors: false, limits: 'authorize' }, bodyLimit: gateway.config.server.bodyLimits.authorize }, handler)
}

/** Sends the browser to the upstream with the gateway's callback and PKCE, and the transaction sealed into `state`. */
export async function sendToUpstream(gateway: Gateway, request: FastifyRequest, reply: FastifyReply, pending: PendingAuthorization) {
  const verifier = newVerifier()
  const transaction: Transaction = { j: randomUUID(), c: pending.c, r: pending.r, s: pending.s, cc: pending.cc, v: verifier, sc: pending.sc, res: pending.res, f: pending.f }
  const upstreamUrl = await buildUpstreamAuthorizationUrl(gateway, {
    response_type: 'code',
    // Pending authorizations sealed before scope renaming carry no `us`: theirs is the client's scope.
    scope: pending.us ?? pending.sc,
    state: gateway.sealer.seal('transaction', transaction, gateway.config.lifetimes.transactionSeconds),
    code_challenge: s256(verifier),
    code_challenge_method: 'S256',
  }, pending.u)
  return redirectBrowser(request, reply, upstreamUrl.href)
}

/**
 * The consent page, with the pending authorization and a CSRF token bound to
 * it and to this browser's consent cookie (set here when the browser has none).
 */
async function askForConsent(gateway: Gateway, request: FastifyRequest, reply: FastifyReply, client: RegisteredClient, pending: PendingAuthorization, cookie: ConsentCookie) {
  const redirectUri = new URL(pending.r)
  const upstreamAuthorization = (await gateway.upstream.metadata()).authorization_endpoint
  const page = renderConsentPage({
    clientName: client.client_name,
    publisher: client.metadata_document ? new URL(client.client_id).host : undefined,
    redirectUri,
    scopes: pending.sc.split(' '),
    action: gateway.endpoints.consent,
    pending: gateway.consent.sealPending(pending),
    csrf: gateway.consent.csrfToken(pending, cookie),
  })
  // The answer redirects to the upstream (approve) or to the client (deny); form-action must allow both.
  const formActions = [cspSource(redirectUri), ...(upstreamAuthorization ? [cspSource(new URL(upstreamAuthorization))] : [])]
  logStep(request, 'authorize', 'consent_asked', 'asking the user for consent')
  return reply.code(200).headers(pageHeaders(formActions)).header('set-cookie', gateway.consent.setCookie(cookie)).send(page)
}

const findClient = step('findClient', async (gateway: Gateway, request: FastifyRequest, parameters: Parameters): Promise<RegisteredClient> => {
  const clientId = required(parameters, 'client_id', 8192)
  const found = await gateway.clients.find(clientId)
  if (!found.ok) throw new OAuthError(400, 'invalid_client', found.reason, { hint: found.hint })
  request.oauthClient = { name: found.client.client_name, handle: clientHandle(found.client.client_id) }
  // A metadata document client never registers: the client list meets it here.
  if (found.client.metadata_document) await gateway.grants.recordClient(found.client)
  return found.client
})

/** Exact match after normalisation (scheme and host case, default port; a loopback port may differ), and still allowed by ops. */
const checkRedirectUri = step('checkRedirectUri', (gateway: Gateway, client: RegisteredClient, parameters: Parameters): string => {
  const requested = optional(parameters, 'redirect_uri')
  if (requested === undefined) {
    if (client.redirect_uris.length === 1) return client.redirect_uris[0]!
    throw new OAuthError(400, 'invalid_redirect_uri', 'redirect_uri is required: the app registered more than one.')
  }
  const checked = normaliseRedirectUri(requested)
  if (!checked.ok) throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address (redirect_uri) ${checked.reason}.`)
  if (!client.redirect_uris.some((registered) => sameRedirectUri(registered, checked.url))) {
    const where = client.metadata_document ? 'listed in the app\'s client metadata document' : 'one this app registered'
    throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address ${checked.uri} is not ${where} (redirect_uri must match exactly; only a loopback port may differ).`)
  }
  if (!gateway.allowlist.allows(checked.url)) {
    gateway.metrics.redirectUriRefused('authorize', presetOf(checked.uri))
    const when = client.metadata_document ? 'not' : 'no longer'
    throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address ${checked.uri} is ${when} allowed by this gateway: ${refusalReason(checked.url, gateway.config.redirectPresets)}.`)
  }
  return checked.uri
})

const checkResponseType = step('checkResponseType', (parameters: Parameters) => {
  const responseType = required(parameters, 'response_type')
  if (responseType !== 'code') throw unsupportedResponseType('response_type: only code is supported (OAuth 2.1 §4.1)')
})

/** PKCE with S256 is required (OAuth 2.1, MCP authorization). */
const checkPkce = step('checkPkce', (parameters: Parameters): string => {
  const challenge = required(parameters, 'code_challenge')
  const method = optional(parameters, 'code_challenge_method')
  if (method !== 'S256') throw invalidRequest(`code_challenge_method: must be S256, not ${method ?? 'absent (plain)'} (OAuth 2.1 §4.1.1)`)
  if (!isValidChallenge(challenge)) throw invalidRequest('code_challenge: must be the base64url SHA-256 digest of the code_verifier, 43 characters (RFC 7636 §4.2)')
  return challenge
})

/** An absent or empty scope means the configured default scopes. */
const resolveScope = step('resolveScope', (gateway: Gateway, parameters: Parameters): string =>
  resolveClientScope(gateway.config.scopes, optional(parameters, 'scope')),
)

/** OpenID Connect Core §3.1.2.1: `prompt=consent` asks the user even when this browser approved the client before. */
const promptsForConsent = (parameters: Parameters): boolean => optional(parameters, 'prompt', 256)?.split(' ').includes('consent') ?? false

/** RFC 8707: a resource, when named, must be the protected MCP server; what the upstream gets is the upstream module's business. */
const checkResourceParameter = step('checkResource', (gateway: Gateway, parameters: Parameters): string | undefined =>
  checkResource(gateway.config, optional(parameters, 'resource')),
)

const buildUpstreamAuthorizationUrl = step('buildUpstreamAuthorizationUrl', (gateway: Gateway, parameters: Record<string, string>, upstreamClientId: string | undefined) =>
  gateway.upstream.authorizationUrl(parameters, upstreamClientId),
)
