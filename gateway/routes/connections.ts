/**
 * The user's connected-apps page. `GET /connections` signs the user in
 * through the upstream (the gateway's own upstream client and callback, its
 * own single-use `state` bound to this browser, its own PKCE), then lists the
 * apps connected to the user's account: their grants. Disconnect ends one
 * grant (with its upstream refresh token) and forgets this browser's consent
 * for that app; sign-out ends the page's session only. Both forms carry a
 * CSRF token bound to the session and the action, used once, and are refused
 * from another site, as on the consent page.
 *
 * The page needs the user's identity only: the upstream tokens its sign-in
 * gets are never kept (see `discardSignInTokens`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { clientHandle } from '../clients/registry.ts'
import { PATHS, type Gateway } from '../context.ts'
import { OAuthError, step } from '../errors.ts'
import type { GrantSummary } from '../grants/grant.ts'
import { audit, logStep } from '../http/log.ts'
import { describeSeconds, pageHeaders, redirectBrowser, renderConnectionsPage, renderConnectionsUnavailable, renderSignedOutPage, type ConnectionView } from '../http/pages.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { s256 } from '../policy/pkce.ts'
import { fromOtherSite } from '../policy/same-origin.ts'
import { scopeNames, upstreamScope } from '../policy/scopes.ts'
import type { PageSignIn, SessionAction, UserSession } from '../policy/user-session.ts'
import { checkUpstreamError, checkUpstreamIssuer } from '../upstream/authorization-response.ts'
import type { TokenSet } from '../upstream/index.ts'

export const DISCONNECT_PATH = `${PATHS.connections}/disconnect`
export const SIGN_OUT_PATH = `${PATHS.connections}/sign-out`

const OPEN_AGAIN = `Open ${PATHS.connections} again to sign in and see your connected apps.`
/** The scopes the page's sign-in asks for, where the gateway supports them: who the user is, nothing more. */
const IDENTITY_SCOPES = ['openid', 'profile', 'email']

export async function connections(app: FastifyInstance) {
  const gateway = app.gateway
  // Browser endpoints, counted with /authorize's per-address limit (limits.authorize.perIp): the page starts sign-ins and revocations at the upstream.
  const page = { config: { browser: true, cors: false, limits: 'authorize' } } as const

  app.get(PATHS.connections, page, async (request, reply) => {
    if (await identityUnavailable(gateway)) return showUnavailable(reply)
    const session = await openSession(gateway, request)
    if (!session) return startSignIn(gateway, request, reply)
    const notice = optional(parametersOf(request.query), 'disconnected', 16) ? 'The app was disconnected: it can no longer renew its access to your NeonPanel account.' : undefined
    return showConnections(gateway, reply, session, await listConnections(gateway, session), notice)
  })

  app.post(DISCONNECT_PATH, page, async (request, reply) => {
    const parameters = parametersOf(request.body)
    checkSameOrigin(gateway, request)
    const session = await requireSession(gateway, request)
    await checkCsrfToken(gateway, parameters, session, 'disconnect')
    const grant = await findOwnGrant(gateway, session, parameters)
    await endGrant(gateway, request, session, grant)
    reply.header('set-cookie', forgetConsent(gateway, request, grant))
    return redirectBrowser(request, reply, `${gateway.endpoints.connections}?disconnected=1`)
  })

  app.post(SIGN_OUT_PATH, page, async (request, reply) => {
    const parameters = parametersOf(request.body)
    checkSameOrigin(gateway, request)
    const session = await openSession(gateway, request)
    if (session) {
      await checkCsrfToken(gateway, parameters, session, 'sign-out')
      await endSession(gateway, session)
      logStep(request, 'connections', 'signed_out', 'the user signed out of the connected-apps page')
    }
    return reply.code(200).headers(pageHeaders()).header('set-cookie', gateway.userSessions.endSessionCookie()).send(renderSignedOutPage(gateway.endpoints.connections))
  })
}

/**
 * The callback's half of the page's sign-in: the browser is the one that
 * started it, the `state` is used once, the upstream's answer is checked as
 * for any client; then the code gives the user's identity, the page's session
 * starts, and the browser goes back to the page.
 */
export async function finishPageSignIn(gateway: Gateway, request: FastifyRequest, reply: FastifyReply, signIn: PageSignIn, parameters: Parameters) {
  await checkStartedHere(gateway, request, signIn)
  await useSignInOnce(gateway, signIn)
  checkUpstreamError(parameters)
  const iss = await checkUpstreamIssuer(gateway.upstream, parameters)
  const { tokens, identity } = await exchangeSignInCode(gateway, signIn, required(parameters, 'code'), iss)
  discardSignInTokens(request, tokens)
  if (!identity) return showUnavailable(reply)
  const { setCookies } = gateway.userSessions.startSession(identity)
  logStep(request, 'connections', 'signed_in', 'the user signed in to the connected-apps page')
  reply.header('set-cookie', setCookies)
  return redirectBrowser(request, reply, gateway.endpoints.connections)
}

/** `doctor` and the config tell: no identity source, so no way to tell whose grants are whose. */
async function identityUnavailable(gateway: Gateway): Promise<boolean> {
  return (await gateway.upstream.identitySource()) === 'none'
}

function showUnavailable(reply: FastifyReply) {
  return reply.code(200).headers(pageHeaders()).send(renderConnectionsUnavailable())
}

/** The session in the cookie, unless it is forged, expired or signed out. */
async function openSession(gateway: Gateway, request: FastifyRequest): Promise<UserSession | undefined> {
  const session = gateway.userSessions.readSession(request.headers.cookie)
  if (!session) return undefined
  return (await gateway.store.get(endedKey(session))) === undefined ? session : undefined
}

function endedKey(session: UserSession) {
  return `session-ended:${session.sid}`
}

/** Sign-out: the sealed session would open until it expires, so its end is kept in the store until then (every replica sees it). */
async function endSession(gateway: Gateway, session: UserSession) {
  await gateway.store.set(endedKey(session), '1', gateway.userSessions.secondsLeft(session))
}

/** To the upstream as the gateway's own client, asking only who the user is, with the sign-in cookie that binds `state` to this browser. */
const startSignIn = step('startSignIn', async (gateway: Gateway, request: FastifyRequest, reply: FastifyReply) => {
  const { signIn, state, setCookie } = gateway.userSessions.startSignIn()
  const url = await gateway.upstream.authorizationUrl({
    response_type: 'code',
    scope: signInScope(gateway),
    state,
    code_challenge: s256(signIn.v),
    code_challenge_method: 'S256',
  })
  logStep(request, 'connections', 'sign_in_started', 'sending the browser to the upstream to sign in to the connected-apps page')
  reply.header('set-cookie', setCookie)
  return redirectBrowser(request, reply, url.href)
})

/** openid, profile and email where supported (renamed as for clients), else the default scopes; never offline_access. */
function signInScope(gateway: Gateway): string {
  const { scopes } = gateway.config
  const identity = IDENTITY_SCOPES.filter((scope) => scopes.supported.includes(scope))
  const asked = identity.length ? identity : scopes.default.filter((scope) => scope !== 'offline_access')
  return upstreamScope(scopes, asked.join(' '), { refreshTokens: false })
}

/** Checked before the state is spent, so that another browser presenting it cannot use it up. */
const checkStartedHere = step('checkStartedHere', async (gateway: Gateway, request: FastifyRequest, signIn: PageSignIn) => {
  if (gateway.userSessions.startedHere(signIn, request.headers.cookie)) return
  // Finishing a sign-in removes its cookie: say so when that is why it is missing.
  if ((await gateway.store.get(signInKey(signIn))) !== undefined) throw alreadyCompleted()
  throw new OAuthError(400, 'invalid_request', 'This sign-in was not started in this browser (or the browser dropped its cookie), so it was not completed.', {
    hint: `Allow cookies for this site, then ${OPEN_AGAIN.charAt(0).toLowerCase()}${OPEN_AGAIN.slice(1)}`,
  })
})

const useSignInOnce = step('useSignInOnce', async (gateway: Gateway, signIn: PageSignIn) => {
  if (!(await gateway.store.useOnce(signInKey(signIn), gateway.config.lifetimes.transactionSeconds))) throw alreadyCompleted()
})

function signInKey(signIn: PageSignIn) {
  return `sign-in:${signIn.j}`
}

function alreadyCompleted() {
  return new OAuthError(400, 'invalid_request', 'This sign-in was already completed (state is used once).', { hint: OPEN_AGAIN })
}

const exchangeSignInCode = step('exchangeSignInCode', (gateway: Gateway, signIn: PageSignIn, code: string, iss: string | undefined) =>
  gateway.upstream.exchangeCode({ code, iss, codeVerifier: signIn.v }),
)

/**
 * The page needs who signed in, not access: its tokens are never kept or
 * sent anywhere. The refresh token is not revoked either, on purpose: an
 * upstream that keeps one grant per browser session and ends all of it on
 * RFC 7009 revocation (RFC 7009 §2.1 allows it; oidc-provider does) would end
 * every app connected from this browser with it.
 */
function discardSignInTokens(request: FastifyRequest, tokens: TokenSet) {
  logStep(request, 'connections', 'tokens_discarded', 'the sign-in tokens of the connected-apps page are dropped unused', { refresh_token_issued: typeof tokens.refresh_token === 'string' })
}

/** The user's live grants, every page of them (a user has a handful). */
async function listConnections(gateway: Gateway, session: UserSession): Promise<GrantSummary[]> {
  const grants: GrantSummary[] = []
  let cursor: string | undefined
  do {
    const page = await gateway.grants.listForUser(session.user.id, { cursor })
    grants.push(...page.items)
    cursor = page.nextCursor
  } while (cursor !== undefined)
  return grants
}

function showConnections(gateway: Gateway, reply: FastifyReply, session: UserSession, grants: GrantSummary[], notice: string | undefined) {
  const sessions = gateway.userSessions
  const page = renderConnectionsPage({
    user: session.user,
    connections: grants.map((grant) => connectionView(grant, sessions.csrfToken(session, 'disconnect'))),
    disconnectAction: DISCONNECT_PATH,
    signOutAction: SIGN_OUT_PATH,
    signOutCsrf: sessions.csrfToken(session, 'sign-out'),
    notice,
  })
  return reply.code(200).headers(pageHeaders()).send(page)
}

function connectionView(grant: GrantSummary, csrf: string): ConnectionView {
  return {
    grantId: grant.grantId,
    csrf,
    clientName: grant.clientName,
    unverified: grant.unverified,
    publisher: grant.unverified ? undefined : hostOfUrl(grant.clientId),
    redirectHost: grant.redirectHost,
    scopes: scopeNames(grant.scope),
    createdAt: grant.createdAt,
    lastUsedAt: grant.lastUsedAt,
  }
}

/** A metadata-document client's id is its document's https URL: the host publishes the name. */
function hostOfUrl(clientId: string): string | undefined {
  return URL.canParse(clientId) ? new URL(clientId).host : undefined
}

/** Answers on the page must come from the page (policy/same-origin.ts). */
function checkSameOrigin(gateway: Gateway, request: FastifyRequest) {
  if (fromOtherSite(gateway.config.publicUrl, request.headers)) {
    throw new OAuthError(400, 'invalid_request', 'This request was sent from another website, not from your connected-apps page, so nothing was changed.', { hint: OPEN_AGAIN })
  }
}

/** A form answered after the session ended (expired, signed out, or never genuine) changes nothing. */
const requireSession = step('requireSession', async (gateway: Gateway, request: FastifyRequest): Promise<UserSession> => {
  const session = await openSession(gateway, request)
  if (session) return session
  const lifetime = describeSeconds(gateway.userSessions.sessionSeconds)
  throw new OAuthError(400, 'invalid_request', `Your sign-in on the connected-apps page has ended (it lasts ${lifetime}), so nothing was changed.`, { hint: OPEN_AGAIN })
})

/** The token must be this session's, for this action, and unused (a replayed form is refused). */
const checkCsrfToken = step('checkCsrfToken', async (gateway: Gateway, parameters: Parameters, session: UserSession, action: SessionAction) => {
  const id = gateway.userSessions.csrfMatches(optional(parameters, 'csrf', 8192), session, action)
  if (id === undefined) {
    throw new OAuthError(400, 'invalid_request', 'This request could not be verified as coming from your connected-apps page, so nothing was changed.', { hint: OPEN_AGAIN })
  }
  if (!(await gateway.store.useOnce(`session-csrf:${id}`, gateway.userSessions.secondsLeft(session)))) {
    throw new OAuthError(400, 'invalid_request', 'This form was already sent; a form counts once, so nothing more was changed.', { hint: OPEN_AGAIN })
  }
})

/** Another user's grant reads exactly as an unknown one: the page never tells whether an id exists. */
const findOwnGrant = step('findOwnGrant', async (gateway: Gateway, session: UserSession, parameters: Parameters): Promise<GrantSummary> => {
  const grantId = required(parameters, 'grant', 256)
  const grant = await gateway.grants.get(grantId)
  if (!grant || grant.user?.id !== session.user.id) throw noSuchConnection()
  return grant
})

function noSuchConnection() {
  return new OAuthError(400, 'invalid_request', 'None of your connected apps has this id (it may be disconnected already), so nothing was disconnected.', { hint: OPEN_AGAIN })
}

/**
 * Ends the grant, bound to the user (the registry ends it only if it is
 * theirs), revoking its upstream refresh token, with one audit line.
 */
const endGrant = step('endGrant', async (gateway: Gateway, request: FastifyRequest, session: UserSession, grant: GrantSummary) => {
  const outcome = await gateway.grants.revokeGrant(grant.grantId, 'user', { user: session.user.id })
  if (!outcome.ended) throw noSuchConnection()
  audit(request.log, { actor: 'user', action: 'grants.disconnect', user: session.user.id, grant_ids: [grant.grantId], count: 1, client_id: grant.clientId, upstream_revocation: outcome.upstreamRevocation })
})

/** This browser's consent cookie without the app's approvals: connecting it again asks first (policy/consent.ts). */
function forgetConsent(gateway: Gateway, request: FastifyRequest, grant: GrantSummary): string[] {
  const cookie = gateway.consent.readCookie(request.headers.cookie)
  return cookie ? [gateway.consent.setCookie(gateway.consent.withoutClient(cookie, clientHandle(grant.clientId)))] : []
}
