/**
 * The only module that talks to the upstream OAuth server (my.neonpanel.com):
 * one openid-client Configuration for the gateway's own client (in
 * registration passthrough, one per call for the client registered at the
 * upstream, over the same metadata), one undici Agent, every request bounded in
 * time and size (fetch.ts), and verb-noun functions for each call. Every failure
 * leaves through upstream/errors.ts, and what the upstream answered is logged.
 */
import type { FastifyBaseLogger } from 'fastify'
import * as oidc from 'openid-client'
import { Agent } from 'undici'
import type { Config } from '../config/schema.ts'
import { identityFrom, identitySourceFor, type Identity, type IdentitySourceInUse } from '../policy/identity.ts'
import { isLoopbackHost } from '../policy/redirect-uri.ts'
import { OAuthError } from '../errors.ts'
import { upstreamResourceParameters } from '../policy/resource.ts'
import { translateRegisteredClientError, translateUpstreamError, type UpstreamCall } from './errors.ts'
import { readRegistrationResponse, upstreamClientMetadata, type RegistrationRequest, type UpstreamAuthMethod, type UpstreamClient, type UpstreamRegistration } from './registration.ts'

import { boundedFetch, codesOf, recordingExchange, type Exchange } from './fetch.ts'

export type { UpstreamClient, UpstreamRegistration } from './registration.ts'
export type { Identity, IdentitySourceInUse } from '../policy/identity.ts'

export interface TokenSet {
  access_token: string
  token_type: string
  expires_in?: number
  refresh_token?: string
  scope?: string
  [parameter: string]: unknown
}

export type UpstreamMetadata = Readonly<oidc.ServerMetadata>

/** A code exchanged: the tokens, and who signed in (undefined when the upstream tells nothing). */
export interface Exchanged {
  tokens: TokenSet
  identity: Identity | undefined
}


/**
 * Every call acts as the gateway's own upstream client, or, given an
 * UpstreamClient (registration passthrough), as that client.
 */
export interface Upstream {
  /** The upstream's metadata, loaded once; rejects with an OAuthError while it cannot be loaded. */
  metadata(): Promise<UpstreamMetadata>
  /** The upstream authorization URL the browser is sent to. */
  /** `clientId`: the client's own upstream client (registration passthrough); the gateway's client otherwise. */
  authorizationUrl(parameters: Record<string, string>, clientId?: string): Promise<URL>
  /** The code exchanged for tokens, with who signed in (the connections page signs users in with it too). */
  exchangeCode(input: { code: string; iss?: string | undefined; codeVerifier: string; parameters?: Record<string, string>; client?: UpstreamClient | undefined }): Promise<Exchanged>
  refreshGrant(refreshToken: string, parameters?: Record<string, string>, client?: UpstreamClient): Promise<TokenSet>
  revokeToken(token: string, tokenTypeHint?: string, client?: UpstreamClient): Promise<void>
  /**
   * RFC 7009 for a grant's refresh token when the upstream has a revocation
   * endpoint ('revoked'); 'unsupported' when it names none. Failures throw.
   */
  revokeRefreshToken(refreshToken: string, client?: UpstreamClient): Promise<'revoked' | 'unsupported'>
  /** Which source identities come from with this upstream's metadata and upstream.identitySource. */
  identitySource(): Promise<IdentitySourceInUse>
  /** RFC 7591 at the upstream: a new upstream client whose one redirect URI is the gateway's callback. */
  registerClient(request: RegistrationRequest): Promise<UpstreamRegistration>
  close(): Promise<void>
}

type UpstreamConfig = Config['upstream']
type AuthMethod = 'client_secret_basic' | 'client_secret_post'

/**
 * `auto` reads the upstream's metadata: client_secret_basic when it is listed
 * (or nothing is: RFC 8414 §2 makes it the default), else client_secret_post
 * when that is listed.
 */
export function chooseAuthMethod(configured: UpstreamConfig['tokenEndpointAuthMethod'], metadata: Pick<oidc.ServerMetadata, 'token_endpoint_auth_methods_supported'>): AuthMethod {
  if (configured !== 'auto') return configured
  const supported = metadata.token_endpoint_auth_methods_supported ?? ['client_secret_basic']
  return supported.includes('client_secret_basic') || !supported.includes('client_secret_post') ? 'client_secret_basic' : 'client_secret_post'
}

function clientAuth(method: UpstreamAuthMethod, secret: string | undefined): oidc.ClientAuth {
  if (method === 'client_secret_basic') return oidc.ClientSecretBasic(secret)
  if (method === 'client_secret_post') return oidc.ClientSecretPost(secret)
  return oidc.None()
}

function isInsecureAllowed(issuer: string) {
  const url = new URL(issuer)
  return url.protocol === 'http:' && isLoopbackHost(url.hostname)
}

/** The issuer as configured, then with a trailing slash added or removed: upstreams and configs disagree on it. */
export function issuerSpellings(issuer: string): URL[] {
  const other = issuer.endsWith('/') ? issuer.replace(/\/+$/, '') : `${issuer}/`
  const spellings = [new URL(issuer), new URL(other)]
  // For a bare origin both spellings are one URL (`new URL` adds the slash).
  return spellings[0]!.href === spellings[1]!.href ? [spellings[0]!] : spellings
}

/**
 * RFC 8414 first (issuers with a path use /.well-known/oauth-authorization-server/<path>),
 * then OpenID discovery (<issuer>/.well-known/openid-configuration), each for
 * both spellings of the issuer; the metadata's own `issuer` must match the
 * spelling it was found under (RFC 8414 §3.3), and it is what every later
 * `iss` check compares against.
 */
async function discoverMetadata(upstream: UpstreamConfig, options: oidc.DiscoveryRequestOptions): Promise<oidc.ServerMetadata> {
  let firstError: unknown
  for (const issuer of issuerSpellings(upstream.issuer)) {
    for (const algorithm of ['oauth2', 'oidc'] as const) {
      try {
        const discovered = await oidc.discovery(issuer, upstream.clientId, undefined, oidc.None(), { ...options, algorithm })
        return { ...discovered.serverMetadata() }
      } catch (err) {
        firstError ??= err
      }
    }
  }
  throw firstError
}

type UpstreamLog = Pick<FastifyBaseLogger, 'info' | 'warn'>

/** Where each call's duration and outcome go (metrics.ts). */
export type UpstreamObserver = (call: UpstreamCall, seconds: number, failure?: { status: number; error: string }) => void

export interface UpstreamOptions {
  log?: UpstreamLog
  observe?: UpstreamObserver
}

export function createUpstream(config: Config, callbackUrl: string, options: UpstreamOptions = {}): Upstream {
  const { log = { info() {}, warn() {} }, observe = () => {} } = options
  const upstream = config.upstream
  // The Agent's timeouts are backstops; the deadline in boundedFetch is what bounds a request as a whole.
  const agent = new Agent({
    connect: { timeout: upstream.connectTimeoutMs },
    headersTimeout: upstream.timeoutMs,
    bodyTimeout: upstream.timeoutMs,
    connections: upstream.maxConnections,
  })
  const customFetch: oidc.CustomFetch = boundedFetch(agent, upstream)
  const execute = isInsecureAllowed(upstream.issuer) ? [oidc.allowInsecureRequests] : []
  // RFC 8707: what the upstream gets in place of the client's resource, on every authorization, code exchange and refresh.
  const resourceParameters = upstreamResourceParameters(config)
  let authMethod: AuthMethod | undefined

  /** Runs one upstream call, timed; a failure is translated, then logged with what the upstream answered. */
  async function observed<T>(name: UpstreamCall, client: UpstreamClient | undefined, work: () => Promise<T>): Promise<T> {
    const exchange: Exchange = {}
    const started = performance.now()
    const seconds = () => (performance.now() - started) / 1000
    try {
      const result = await recordingExchange(exchange, work)
      observe(name, seconds())
      return result
    } catch (err) {
      const context = { auth_method: client ? client.authMethod : authMethod }
      const translated = await (client ? translateRegisteredClientError(err, name, context) : translateUpstreamError(err, name, context))
      observe(name, seconds(), translated)
      const entry = { upstream: { call: name, ...exchange, codes: codesOf(err) }, status: translated.status, error: translated.error, reason: translated.message }
      if (translated.status >= 500) log.warn(entry, 'upstream call failed')
      else log.info(entry, 'upstream refused the call')
      throw translated
    }
  }

  /** Every Configuration goes through the one Agent, with the one timeout. */
  function withTransport(configuration: oidc.Configuration): oidc.Configuration {
    configuration[oidc.customFetch] = customFetch
    configuration.timeout = upstream.timeoutMs / 1000
    for (const apply of execute) apply(configuration)
    return configuration
  }

  async function load(): Promise<oidc.Configuration> {
    const metadata: oidc.ServerMetadata = upstream.endpoints
      ? { issuer: upstream.issuer, ...upstream.endpoints }
      : await discoverMetadata(upstream, { [oidc.customFetch]: customFetch, execute, timeout: upstream.timeoutMs / 1000 })
    authMethod = chooseAuthMethod(upstream.tokenEndpointAuthMethod, metadata)
    return withTransport(new oidc.Configuration(metadata, upstream.clientId, { client_secret: upstream.clientSecret }, clientAuth(authMethod, upstream.clientSecret)))
  }

  /** openid-client copies its metadata on every serverMetadata(), read on every authorization and callback: one frozen copy each. */
  const metadataCopies = new WeakMap<oidc.Configuration, oidc.ServerMetadata>()
  function serverMetadata(configuration_: oidc.Configuration): oidc.ServerMetadata {
    let metadata = metadataCopies.get(configuration_)
    if (metadata === undefined) metadataCopies.set(configuration_, (metadata = Object.freeze(configuration_.serverMetadata())))
    return metadata
  }

  let loading: Promise<oidc.Configuration> | undefined
  /** Discovery is cached once it succeeds and retried on the next call after a failure. */
  function configuration(): Promise<oidc.Configuration> {
    const started = performance.now()
    loading ??= load().then(
      (loaded) => {
        observe('discovery', (performance.now() - started) / 1000)
        return loaded
      },
      async (err) => {
        loading = undefined
        const translated = await translateUpstreamError(err, 'discovery', { issuer: upstream.issuer })
        observe('discovery', (performance.now() - started) / 1000, translated)
        throw translated
      },
    )
    return loading
  }

  /** The gateway's own client, or a client registered at the upstream, over the same shared metadata. */
  async function configurationFor(client: UpstreamClient | undefined): Promise<oidc.Configuration> {
    const shared = await configuration()
    if (!client) return shared
    const metadata = client.clientSecret === undefined ? {} : { client_secret: client.clientSecret }
    return withTransport(new oidc.Configuration(serverMetadata(shared), client.clientId, metadata, clientAuth(client.authMethod, client.clientSecret)))
  }

  async function call<T>(name: UpstreamCall, work: (configuration: oidc.Configuration) => Promise<T>, client?: UpstreamClient): Promise<T> {
    const configuration_ = await configurationFor(client)
    return observed(name, client, () => work(configuration_))
  }

  /** RFC 7591 §3: from discovery, or `upstream.endpoints.registration_endpoint`; https like every upstream call. */
  function registrationEndpoint(metadata: oidc.ServerMetadata): string {
    const endpoint = metadata.registration_endpoint
    if (!endpoint) {
      throw new OAuthError(502, 'server_error', 'the NeonPanel sign-in service names no registration endpoint, which registration.mode upstream needs')
    }
    const url = new URL(endpoint)
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      throw new OAuthError(502, 'server_error', 'the NeonPanel sign-in service names a registration endpoint that is not https')
    }
    return endpoint
  }

  /**
   * Who signed in: the ID token openid-client validated (iss, aud, exp, nonce),
   * else userinfo, else RFC 7662 introspection, as upstream.identitySource
   * says. A source that fails leaves the grant without a user (logged): the
   * sign-in itself succeeded.
   */
  async function identify(configuration_: oidc.Configuration, answer: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): Promise<Identity | undefined> {
    const source = identitySourceFor(upstream.identitySource, serverMetadata(configuration_), answer.id_token !== undefined)
    try {
      if (source === 'id_token') return await withDisplayClaims(configuration_, answer, identityFrom(answer.claims(), upstream.userClaim))
      if (source === 'userinfo') {
        const claims = answer.claims()
        return identityFrom(await oidc.fetchUserInfo(configuration_, answer.access_token, claims?.sub ?? oidc.skipSubjectCheck), upstream.userClaim)
      }
      if (source === 'introspection') {
        const introspected = await oidc.tokenIntrospection(configuration_, answer.access_token, { token_type_hint: 'access_token' })
        return introspected.active ? identityFrom(introspected, upstream.userClaim) : undefined
      }
    } catch (err) {
      log.warn({ upstream: { call: source }, err: (err as Error).message }, 'the upstream told no identity; the grant has no user')
    }
    return undefined
  }

  /**
   * OpenID Connect §5.4: an ID token often carries only `sub` (oidc-provider's
   * default), the name and email being userinfo's. Asked once per connection,
   * for the pages that show the user; a failure leaves them out.
   */
  async function withDisplayClaims(configuration_: oidc.Configuration, answer: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, identity: Identity | undefined): Promise<Identity | undefined> {
    const subject = answer.claims()?.sub
    if (!identity || identity.name !== undefined || identity.email !== undefined || !subject || !serverMetadata(configuration_).userinfo_endpoint) return identity
    try {
      const more = identityFrom({ ...(await oidc.fetchUserInfo(configuration_, answer.access_token, subject)), [upstream.userClaim]: identity.id }, upstream.userClaim)
      return { ...identity, name: more?.name, email: more?.email }
    } catch (err) {
      log.info({ upstream: { call: 'userinfo' }, err: (err as Error).message }, 'userinfo told no name or email; the grant shows the user id only')
      return identity
    }
  }

  return {
    async metadata() {
      return serverMetadata(await configuration())
    },

    async authorizationUrl(parameters, clientId) {
      // Only the public client id goes into the URL; no credentials are needed to build it.
      const client = clientId === undefined ? undefined : { clientId, authMethod: 'none' as const }
      return oidc.buildAuthorizationUrl(await configurationFor(client), { ...parameters, ...resourceParameters, redirect_uri: callbackUrl })
    },

    exchangeCode({ code, iss, codeVerifier, parameters, client }) {
      // openid-client validates the authorization response it is given: rebuild it as it reached the callback.
      const response = new URL(callbackUrl)
      response.searchParams.set('code', code)
      if (iss !== undefined) response.searchParams.set('iss', iss)
      return call('token (authorization_code)', async (configuration_) => {
        const answer = await oidc.authorizationCodeGrant(configuration_, response, { pkceCodeVerifier: codeVerifier }, { ...parameters, ...resourceParameters })
        return { tokens: toTokenSet(answer), identity: await identify(configuration_, answer) }
      }, client)
    },

    refreshGrant(refreshToken, parameters, client) {
      return call('token (refresh_token)', async (configuration_) =>
        toTokenSet(await oidc.refreshTokenGrant(configuration_, refreshToken, { ...parameters, ...resourceParameters })),
      client)
    },

    revokeToken(token, tokenTypeHint, client) {
      return call('revocation', (configuration_) => oidc.tokenRevocation(configuration_, token, tokenTypeHint ? { token_type_hint: tokenTypeHint } : undefined), client)
    },

    async revokeRefreshToken(refreshToken, client) {
      if (!serverMetadata(await configuration()).revocation_endpoint) return 'unsupported'
      await call('revocation', (configuration_) => oidc.tokenRevocation(configuration_, refreshToken, { token_type_hint: 'refresh_token' }), client)
      return 'revoked'
    },

    async identitySource() {
      return identitySourceFor(upstream.identitySource, serverMetadata(await configuration()))
    },
    async registerClient(request) {
      const metadata = serverMetadata(await configuration())
      const endpoint = registrationEndpoint(metadata)
      const authMethod = chooseAuthMethod(upstream.tokenEndpointAuthMethod, metadata)
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
      // RFC 7591 §3: an upstream may require an initial access token.
      if (upstream.registrationToken) headers.authorization = `Bearer ${upstream.registrationToken}`
      return observed('registration', undefined, async () => {
        const body = JSON.stringify(upstreamClientMetadata(request, callbackUrl, authMethod))
        const response = await customFetch(endpoint, { method: 'POST', headers, body, redirect: 'manual' })
        return readRegistrationResponse(response, callbackUrl, authMethod)
      })
    },

    async close() {
      await agent.close()
    },
  }
}

/**
 * The upstream's tokens, unchanged, minus the ID token: it carries the
 * upstream's issuer, which a client that discovered the gateway would reject,
 * and MCP clients need only the access and refresh tokens. `expires_in` is
 * already a number: openid-client parses one sent as a string (Entra does).
 */
function toTokenSet(response: oidc.TokenEndpointResponse): TokenSet {
  const { id_token: _idToken, ...rest } = response
  // openid-client lower-cases token_type; the upstream's value was case-insensitive (RFC 6749 §7.1).
  const tokenType = rest.token_type === 'bearer' ? 'Bearer' : rest.token_type
  return { ...rest, token_type: tokenType } as TokenSet
}
