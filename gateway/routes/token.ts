/**
 * The token endpoint. `authorization_code`: the gateway code is checked
 * (client, redirect URI, PKCE, resource) before the upstream code inside it
 * is exchanged, once, and the exchange becomes a grant (grants/registry.ts)
 * holding the upstream refresh token; `refresh_token`: through the grant the
 * client's refresh token names, brokered to the upstream, once for concurrent
 * refreshes of one token. The upstream's access token reaches the client
 * unchanged; the refresh token the client gets names its grant and is sealed
 * and bound to the client, so only that client can use it here, and only
 * while the grant lives. A refresh token issued before grants (a sealed
 * upstream refresh token) is accepted once and becomes a grant.
 *
 * Retries are absorbed (single-flight.ts): the same code with the same
 * code_verifier from the same client (ChatGPT posts twice) gets the first
 * answer again for `lifetimes.codeRetrySeconds`, and refreshes of one refresh
 * token within `lifetimes.refreshRetrySeconds` share one upstream call, so an
 * upstream that rotates refresh tokens never sees the old one twice.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.ts'
import { authenticateClient } from '../clients/authentication.ts'
import type { RegisteredClient } from '../clients/client.ts'
import { clientHandle } from '../clients/registry.ts'
import type { Config } from '../config/schema.ts'
import { InvalidClient, OAuthError, invalidGrant, invalidRequest, invalidScope, step, unsupportedGrantType } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { blockedDescription, clientSubject } from '../policy/blocks.ts'
import { presetOf } from '../policy/presets.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { isValidVerifier, verifierMatches } from '../policy/pkce.ts'
import { normaliseRedirectUri, sameRedirectUri } from '../policy/redirect-uri.ts'
import { acceptedResources, checkResource } from '../policy/resource.ts'
import { grantedClientScope, scopeNames, upstreamScope } from '../policy/scopes.ts'
import type { Grant } from '../grants/grant.ts'
import { hashOf, singleFlight } from '../state/single-flight.ts'
import { slotTag } from '../state/store.ts'
import type { TokenSet } from '../upstream/index.ts'
import type { CodeGrant } from './callback.ts'

/** A refresh token as the client holds it (seal purpose 'grant'): it names its grant, and the generation it was issued at. */
export interface GrantRefreshToken {
  g: string
  n: number
  c: string
  /** The scope granted, in the client's names. */
  sc?: string | undefined
  /** The flow it came from, for the log (log.ts). */
  f?: string | undefined
}

/** A refresh token as the gateway issued it before grants (seal purpose 'refresh'): the upstream's, sealed and bound to the client. */
export interface RefreshGrant {
  /** The upstream refresh token. */
  rt: string
  c: string
  /** The scope granted, in the client's names. */
  sc?: string | undefined
  res?: string | undefined
  /** The flow it came from, for the log (log.ts). */
  f?: string | undefined
}

export async function token(app: FastifyInstance) {
  const gateway = app.gateway

  app.post('/token', { bodyLimit: gateway.config.server.bodyLimits.token, config: { limits: 'token' } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const parameters = parametersOf(request.body)
    const client = await authenticateClient(request, parameters, gateway)
    await checkNotBlocked(gateway, client)
    const grantType = required(parameters, 'grant_type')
    let tokens: TokenSet
    if (grantType === 'authorization_code') tokens = await authorizationCodeGrant(gateway, request, client, parameters)
    else if (grantType === 'refresh_token') tokens = await refreshTokenGrant(gateway, request, client, parameters)
    else throw unsupportedGrantType(`grant_type: ${grantType.slice(0, 100)} is not supported (authorization_code, refresh_token)`)
    logStep(request, 'token', 'issued', 'tokens issued', { grant_type: grantType, refresh_token_issued: typeof tokens.refresh_token === 'string' })
    // RFC 6749 §5.1
    return reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' }).send(tokens)
  })
}

/** A block refuses codes and refresh tokens alike: RFC 6749 §5.2 invalid_client, with the reason ops gave. */
const checkNotBlocked = step('checkNotBlocked', async (gateway: Gateway, client: RegisteredClient) => {
  const block = await gateway.grants.isBlocked(clientSubject(client))
  if (block) throw new InvalidClient(blockedDescription(block))
})

async function authorizationCodeGrant(gateway: Gateway, request: FastifyRequest, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  const { code, grant } = openCode(gateway, client, parameters)
  request.flow = grant.f ?? null
  checkRedirectUri(grant, parameters)
  const verifier = checkPkce(grant, parameters)
  checkResourceParameter(gateway, parameters)
  return exchangeCodeOnce(gateway, client, grant, code, verifier)
}

const openCode = step('openCode', (gateway: Gateway, client: RegisteredClient, parameters: Parameters) => {
  const code = required(parameters, 'code', 8192)
  const grant = gateway.sealer.open<CodeGrant>('code', code)
  if (!grant) throw invalidGrant(`code: is not a code this gateway issued, or it expired (codes live ${gateway.config.lifetimes.codeSeconds} s)`)
  if (grant.c !== clientHandle(client.client_id)) throw invalidGrant('code: was issued to another client (RFC 6749 §4.1.3)')
  return { code, grant }
})

/** RFC 6749 §4.1.3: when sent, it must be the redirect URI the code was issued for. */
const checkRedirectUri = step('checkRedirectUri', (grant: CodeGrant, parameters: Parameters) => {
  const redirectUri = optional(parameters, 'redirect_uri')
  if (redirectUri === undefined) return
  const checked = normaliseRedirectUri(redirectUri)
  if (!checked.ok || !sameRedirectUri(grant.r, checked.url)) throw invalidGrant('redirect_uri: must be the redirect_uri of the authorization request (RFC 6749 §4.1.3)')
})

/** RFC 7636 §4.6. */
const checkPkce = step('checkPkce', (grant: CodeGrant, parameters: Parameters): string => {
  const verifier = required(parameters, 'code_verifier')
  if (!isValidVerifier(verifier)) throw invalidRequest('code_verifier: must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)')
  if (!verifierMatches(verifier, grant.cc)) throw invalidGrant('code_verifier: does not match the code_challenge of the authorization request (RFC 7636 §4.6)')
  return verifier
})

/** RFC 8707 §2.2: a resource on the token request, when sent, must name the MCP server too. */
const checkResourceParameter = step('checkResource', (gateway: Gateway, parameters: Parameters) => checkResource(acceptedResources(gateway.config), optional(parameters, 'resource')))

/** How long an identical request waits for the running one: as long as that one may wait for the upstream. */
function waitMs(config: Config) {
  return config.upstream.timeoutMs + 1000
}

/**
 * The code is spent on the first exchange. A repeat with the same code,
 * verifier and client within the retry window gets the same answer; any other
 * reuse is invalid_grant and reaches neither the upstream nor what it issued.
 */
const exchangeCodeOnce = step('exchangeCodeOnce', async (gateway: Gateway, client: RegisteredClient, grant: CodeGrant, code: string, verifier: string) => {
  const { lifetimes } = gateway.config
  // The spent mark outlives the code, so a replay is refused for as long as the code could be presented.
  const spentSeconds = lifetimes.codeSeconds + 60
  const outcome = await singleFlight(
    gateway,
    {
      // One hash tag: the lock and the answer live on one shard of a cluster.
      lockKey: `code:${slotTag(grant.j)}`,
      lockSeconds: spentSeconds,
      doneSeconds: spentSeconds,
      durable: true,
      answerKey: `code-answer:${slotTag(grant.j)}:${hashOf(code)}`,
      answerSeconds: lifetimes.codeRetrySeconds,
      binding: `${grant.c}\n${verifier}`,
      waitMs: waitMs(gateway.config),
    },
    () => exchangeUpstreamCode(gateway, client, grant),
  )
  switch (outcome.kind) {
    case 'answered':
      return outcome.value
    case 'spent':
      throw invalidGrant(`code: was already used; only a repeat within ${lifetimes.codeRetrySeconds} s gets the first answer again (RFC 6749 §4.1.2)`)
    case 'mismatch':
      throw invalidGrant('code: was already used by a request with another code_verifier')
    case 'busy':
      throw invalidGrant('code: an earlier exchange of this code has not finished; start the authorization again')
  }
})

const exchangeUpstreamCode = step('exchangeUpstreamCode', async (gateway: Gateway, client: RegisteredClient, code: CodeGrant) => {
  const { tokens, identity } = await gateway.upstream.exchangeCode({ code: code.uc, iss: code.i, codeVerifier: code.v, client: client.upstream })
  // Counted here, once per code: a retried exchange gets the same answer without completing another flow.
  gateway.metrics.flowCompleted(presetOf(code.r, client.client_id))
  const answer = clientScope(gateway, tokens, code.sc)
  if (typeof tokens.refresh_token !== 'string') return answer
  const grant = await createGrant(gateway, client, code, tokens, identity)
  return withRefreshToken(gateway, client, answer, grant, code)
})

/** RFC 6749 §5.1 `refresh_token_expires_in` is no standard, but several upstreams send it: the grant ends with its upstream token. */
function upstreamRefreshLifetime(tokens: TokenSet): number | undefined {
  const lifetime = tokens.refresh_token_expires_in
  return typeof lifetime === 'number' && Number.isFinite(lifetime) && lifetime > 0 ? lifetime : undefined
}

const createGrant = step('createGrant', (gateway: Gateway, client: RegisteredClient, code: CodeGrant, tokens: TokenSet, identity: Grant['user']) =>
  gateway.grants.create({
    client,
    redirectUri: code.r,
    scope: code.sc,
    user: identity,
    upstreamRefreshToken: tokens.refresh_token!,
    upstreamRefreshExpiresIn: upstreamRefreshLifetime(tokens),
    accessToken: { token: tokens.access_token, expiresIn: tokens.expires_in },
    flow: code.f,
    resource: code.res,
  }),
)

async function refreshTokenGrant(gateway: Gateway, request: FastifyRequest, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  const token = openRefreshToken(gateway, client, parameters)
  request.flow = token.f ?? null
  checkResourceParameter(gateway, parameters)
  const scope = checkRefreshScope(gateway, token, parameters)
  return refreshOnce(gateway, client, token, scope)
}

/** A refresh token this gateway issued to this client: one that names its grant, or one from before grants. */
type OpenedRefreshToken = ({ kind: 'grant' } & GrantRefreshToken) | ({ kind: 'legacy' } & RefreshGrant)

const openRefreshToken = step('openRefreshToken', (gateway: Gateway, client: RegisteredClient, parameters: Parameters): OpenedRefreshToken => {
  if (!client.grant_types.includes('refresh_token')) {
    throw new OAuthError(400, 'unauthorized_client', 'grant_type: refresh_token is not among the grant_types this client registered')
  }
  const value = required(parameters, 'refresh_token', 8192)
  const bound = gateway.sealer.open<GrantRefreshToken>('grant', value)
  const legacy = bound ? undefined : gateway.sealer.open<RefreshGrant>('refresh', value)
  const token: OpenedRefreshToken | undefined = bound && typeof bound.g === 'string' && Number.isInteger(bound.n)
    ? { kind: 'grant', ...bound }
    : legacy && typeof legacy.rt === 'string' ? { kind: 'legacy', ...legacy } : undefined
  if (!token) throw invalidGrant('refresh_token: is not a refresh token this gateway issued (or it was sealed with a key the gateway no longer has)')
  if (token.c !== clientHandle(client.client_id)) throw invalidGrant('refresh_token: was issued to another client (RFC 9700 §4.14)')
  return token
})

/** RFC 6749 §6: a narrower scope may be asked for, never one that was not granted. */
const checkRefreshScope = step('checkRefreshScope', (gateway: Gateway, grant: OpenedRefreshToken, parameters: Parameters): string | undefined => {
  const asked = scopeNames(optional(parameters, 'scope'))
  if (!asked.length) return undefined
  const allowed = grant.sc === undefined ? gateway.config.scopes.supported : scopeNames(grant.sc)
  const beyond = asked.filter((scope) => !allowed.includes(scope))
  if (beyond.length) throw invalidScope(`scope: ${beyond.join(' ')} was not granted with this refresh token (RFC 6749 §6)`)
  return [...new Set(asked)].join(' ')
})

/**
 * Concurrent refreshes of one refresh token make one upstream call; the
 * others get its answer. The grant is read inside the flight, so a retry
 * within the window gets the first answer even though that answer moved the
 * grant on to a new generation.
 */
const refreshOnce = step('refreshOnce', async (gateway: Gateway, client: RegisteredClient, token: OpenedRefreshToken, scope: string | undefined) => {
  const { config } = gateway
  const key = token.kind === 'grant' ? hashOf(`${token.g}\n${token.n}`) : hashOf(token.rt)
  const outcome = await singleFlight(
    gateway,
    {
      lockKey: `refresh-lock:${slotTag(key)}`,
      lockSeconds: Math.ceil(waitMs(config) / 1000) + 1,
      answerKey: `refresh-answer:${slotTag(key)}`,
      answerSeconds: config.lifetimes.refreshRetrySeconds,
      binding: `${token.c}\n${scope ?? ''}`,
      waitMs: waitMs(config),
    },
    () => (token.kind === 'grant' ? refreshGrantAtUpstream(gateway, client, token, scope) : upgradeLegacyToken(gateway, client, token, scope)),
  )
  switch (outcome.kind) {
    case 'answered':
      return outcome.value
    case 'mismatch':
      throw invalidGrant('refresh_token: was used a moment ago with another scope; use the refresh token from that answer')
    case 'spent':
    case 'busy':
      throw new OAuthError(503, 'temporarily_unavailable', 'refresh_token: another refresh of this token is still running; try again in a moment')
  }
})

/** RFC 6749 §6 at the upstream with the grant's refresh token; the grant remembers what came back. */
const refreshGrantAtUpstream = step('refreshAtUpstream', async (gateway: Gateway, client: RegisteredClient, token: GrantRefreshToken, scope: string | undefined) => {
  const { grant, upstreamRefreshToken } = await gateway.grants.openForRefresh(token.g, token.n)
  const tokens = await gateway.upstream.refreshGrant(upstreamRefreshToken, upstreamParameters(gateway, scope), client.upstream)
  const rotated = typeof tokens.refresh_token === 'string' && tokens.refresh_token !== upstreamRefreshToken
  const next = await gateway.grants.refreshed(grant, {
    upstreamRefreshToken: rotated ? tokens.refresh_token : undefined,
    upstreamRefreshExpiresIn: upstreamRefreshLifetime(tokens),
    accessToken: { token: tokens.access_token, expiresIn: tokens.expires_in },
  })
  const answer = clientScope(gateway, withoutRefreshToken(tokens), scope ?? token.sc)
  // An upstream that does not rotate answers without a new refresh token: the client keeps the one it has.
  return rotated ? withRefreshToken(gateway, client, answer, next, token) : answer
})

/**
 * No mass logout on upgrade: a refresh token from before grants is refreshed
 * once at the upstream and becomes a grant; the client gets a refresh token
 * naming it. The same token presented again later is refused (it is marked
 * spent for grants.maxAgeDays).
 */
const upgradeLegacyToken = step('upgradeLegacyToken', async (gateway: Gateway, client: RegisteredClient, token: RefreshGrant, scope: string | undefined) => {
  if (!(await gateway.grants.adoptLegacyToken(token.rt))) {
    throw invalidGrant('refresh_token: was issued before this gateway kept grants and has already been exchanged for a new one; use that one')
  }
  const tokens = await gateway.upstream.refreshGrant(token.rt, upstreamParameters(gateway, scope), client.upstream).catch(async (err: unknown) => {
    // The upstream gave no tokens (down, timed out, refused): nothing moved on, so a retry may try again.
    await gateway.grants.releaseLegacyToken(token.rt)
    throw err
  })
  // From here the mark stays even when the grant cannot be written: the upstream may have rotated
  // token.rt, and presenting a consumed refresh token again can make it revoke the whole grant (RFC 9700 §4.14.2).
  const grant = await gateway.grants.create({
    client,
    // The redirect URI was not kept in tokens of that time: the client's first one stands for it.
    redirectUri: client.redirect_uris[0] ?? '',
    scope: token.sc,
    upstreamRefreshToken: typeof tokens.refresh_token === 'string' ? tokens.refresh_token : token.rt,
    upstreamRefreshExpiresIn: upstreamRefreshLifetime(tokens),
    accessToken: { token: tokens.access_token, expiresIn: tokens.expires_in },
    flow: token.f,
    resource: token.res,
  })
  gateway.grants.upgraded()
  return withRefreshToken(gateway, client, clientScope(gateway, withoutRefreshToken(tokens), scope ?? token.sc), grant, token)
})

function upstreamParameters(gateway: Gateway, scope: string | undefined) {
  return scope === undefined ? undefined : { scope: upstreamScope(gateway.config.scopes, scope, { refreshTokens: true }) }
}

function withoutRefreshToken(tokens: TokenSet): TokenSet {
  const { refresh_token: _upstream, ...rest } = tokens
  return rest
}

/** The answer's scope in the client's names. */
function clientScope(gateway: Gateway, tokens: TokenSet, askedScope: string | undefined): TokenSet {
  const scope = askedScope === undefined ? tokens.scope : grantedClientScope(gateway.config.scopes, askedScope, tokens.scope)
  const answer = scope === undefined ? tokens : { ...tokens, scope }
  return typeof answer.refresh_token === 'string' ? withoutRefreshToken(answer) : answer
}

/** The refresh token the client gets: it names the grant at its current generation, sealed and bound to the client. */
function withRefreshToken(gateway: Gateway, client: RegisteredClient, answer: TokenSet, grant: Grant, origin: { sc?: string | undefined; f?: string | undefined }): TokenSet {
  const bound: GrantRefreshToken = { g: grant.grantId, n: grant.generation, c: clientHandle(client.client_id), sc: origin.sc, f: origin.f }
  return { ...answer, refresh_token: gateway.sealer.seal('grant', bound) }
}
