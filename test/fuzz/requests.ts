/**
 * Generated hostile requests for every endpoint, and the rules every answer
 * must keep. Real values (registered clients, sealed states, real codes and
 * refresh tokens) are mixed with missing, repeated, empty, oversized,
 * non-UTF-8, percent-broken, prototype-polluting and wrongly typed ones, under
 * any content type and any kind of broken Authorization header.
 */
import fc from 'fast-check'
import { renderConsentPage, renderErrorPage } from '../../gateway/http/pages.ts'

export type Endpoint = 'metadata' | 'protected-resource' | 'register' | 'authorize' | 'consent' | 'callback' | 'token' | 'revoke' | 'health' | 'unknown'

export interface FuzzRequest {
  endpoint: Endpoint
  method: string
  /** Path and query exactly as they go on the wire. */
  path: string
  headers: Record<string, string>
  body?: Buffer
}

export interface FuzzClient {
  client_id: string
  client_secret?: string
  token_endpoint_auth_method: string
  redirect_uris: string[]
}

/** What the fuzzer knows about the running gateway, drawn from by index so that a seed reproduces a run. */
export interface FuzzContext {
  upstreamIssuer: string
  upstreamAuthorizationEndpoint: string
  mcpResource: string
  clients: FuzzClient[]
  /** Every redirect URI the fuzzer's clients registered: the only places a redirect may go, besides the upstream. */
  redirectUris: string[]
  /** Sealed transaction states from real /authorize answers (the upstream's `state`). */
  states: string[]
  /** The gateway's own origin, the only one a consent answer may come from. */
  gatewayOrigin: string
  /** Real consent pages: their hidden fields and the consent cookie each set (`name=value`). Each answer counts once. */
  consents: Array<{ pending: string; csrf: string; cookie: string }>
  /** Real gateway codes with their verifiers and the index of the client they were issued to. */
  codes: Array<{ code: string; verifier: string; challenge: string; client: number }>
  refreshTokens: Array<{ token: string; client: number }>
}

// ---------------------------------------------------------------- values

/** A parameter value: plain text (encoded for the wire), raw wire bytes, or a typed JSON value. */
type Value = { text: string } | { wire: string } | { json: unknown }

const text = (arbitrary: fc.Arbitrary<string>) => arbitrary.map((value): Value => ({ text: value }))

/** Strings with meaning to parsers, browsers and JavaScript objects. */
const HOSTILE_TEXT = [
  '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__',
  '<fz-tag>', '"><fz-img src=x onerror=alert(1)>', "'><fz-svg/onload=alert(1)>", '<script>fz()</script>',
  'javascript:alert(1)', 'data:text/html,<fz-x>', '\u0000', '\r\nX-Injected: fz', ' ', '\t', 'null', 'undefined',
  'true', '[]', '{}', '1e309', '-1', 'NaN', '\u202e\u0627', '😀', 'a'.repeat(300),
  'https://evil.example/callback', 'http://127.0.0.1.evil.example/callback', '//evil.example', '\\\\evil.example',
  'https://chatgpt.com/connector/oauth/../../evil', 'https://chatgpt.com/connector/oauth/a%2F..%2Fb',
  'https://user@chatgpt.com/connector/oauth/x', 'https://chatgpt.com/connector/oauth/x#frag',
  'https://chatgpt.com.evil.example/connector/oauth/x', 'HTTPS://CHATGPT.COM/connector/oauth/x',
  'https://chatgpt.com:443/connector/oauth/x', 'http://127.0.0.1:9/callback', 'http://[::1]/callback',
  'cursor://anysphere.cursor-mcp/oauth/callback', 'ftp://x/y', 'file:///etc/passwd',
]

/** Raw wire forms: percent-broken and non-UTF-8 encodings. */
const HOSTILE_WIRE = [
  '%', '%%', '%2', '%zz', '%Z1', '%FF', '%C3%28', '%ED%A0%80', '%F0%28%8C%BC', '%C0%AF', '%E2%82', '%00', '%0D%0A',
  '%25', '%2525', 'a%20b+c', '+', '++', '%2B', '%26', '%3D', '&', '=', '==', '%u0041', '%C3%A9',
  '%3Cfz-tag%3E', '%22%3E%3Cfz-x%3E', '\u00e9', '\u00ff\u00fe',
]

const oversized = fc.constantFrom(5_000, 9_000, 20_000).map((length) => 'x'.repeat(length))

/** Any value at all for a parameter. */
const hostile: fc.Arbitrary<Value> = fc.oneof(
  { weight: 3, arbitrary: text(fc.constantFrom(...HOSTILE_TEXT)) },
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_WIRE).map((wire): Value => ({ wire })) },
  { weight: 2, arbitrary: text(fc.string({ unit: 'grapheme', maxLength: 30 })) },
  { weight: 1, arbitrary: text(oversized) },
  { weight: 2, arbitrary: fc.constant<Value>({ text: '' }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((json): Value => ({ json })) },
  { weight: 1, arbitrary: fc.constantFrom<Value>({ json: { fz_polluted: true } }, { json: { prototype: { fz_polluted: true } } }, { json: { __proto__: null, fz_polluted: true } }) },
)

/** A parameter: the values a well-behaved client sends, and anything at all. */
interface Param {
  good: fc.Arbitrary<Value>
  any: fc.Arbitrary<Value>
}

/** Good values, near misses (values with meaning, but wrong here), or anything. */
function plausible(good: fc.Arbitrary<string>, nearMiss?: fc.Arbitrary<string>): Param {
  const goodValues = text(good)
  const any = nearMiss
    ? fc.oneof({ weight: 3, arbitrary: goodValues }, { weight: 1, arbitrary: text(nearMiss) }, { weight: 2, arbitrary: hostile })
    : fc.oneof({ weight: 3, arbitrary: goodValues }, { weight: 2, arbitrary: hostile })
  return { good: goodValues, any }
}

const anything: Param = { good: hostile, any: hostile }

const from = <T>(values: readonly T[], fallback: T) => fc.constantFrom(...(values.length ? values : [fallback]))

// ---------------------------------------------------------------- parameters

type Pairs = Array<[name: Value, value: Value | undefined]>

const HOSTILE_NAMES = ['__proto__', 'constructor', 'prototype', '__proto__[fz]', 'constructor[prototype][fz]', 'hasOwnProperty', 'toString', 'client_id[]', 'a[b][c]', '', ' ']

/** Parameters, and the Authorization or Cookie header when they come with their own (client credentials, a consent page's cookie). */
interface Params {
  pairs: Pairs
  authorization?: string | undefined
  cookie?: string | undefined
}

const pairOf = (name: string, value: Value | undefined): [Value, Value | undefined] => [{ text: name }, value]

/** A good request with one parameter broken: replaced by anything, dropped, repeated or emptied (or none broken). */
function nearlyGood(good: fc.Arbitrary<Pairs>): fc.Arbitrary<Pairs> {
  return fc
    .record({ pairs: good, broken: fc.nat({ max: 16 }), how: fc.constantFrom('replace', 'drop', 'repeat', 'empty'), replacement: hostile })
    .map(({ pairs, broken, how, replacement }) =>
      pairs.flatMap((pair, i): Pairs => {
        if (i !== broken) return [pair]
        if (how === 'drop') return []
        if (how === 'repeat') return [pair, [pair[0], replacement]]
        return [[pair[0], how === 'empty' ? { text: '' } : replacement]]
      }),
    )
}

/** A few unexpected parameters, with prototype-polluting names among them. */
const extraPairs = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Pairs>([]) },
  {
    weight: 1,
    arbitrary: fc.array(
      fc.tuple(
        fc.oneof(text(fc.constantFrom(...HOSTILE_NAMES)), text(fc.string({ maxLength: 12 })), fc.constantFrom(...HOSTILE_WIRE).map((wire): Value => ({ wire }))),
        fc.option(hostile, { nil: undefined }),
      ),
      { maxLength: 3 },
    ),
  },
)

/**
 * The endpoint's parameters: each one missing, present, empty or repeated,
 * with any value; or what a good client would send with one parameter
 * broken, which reaches deeper into the endpoint. `coherent` adds requests
 * whose parameters belong together (a real code with its verifier and its
 * client's credentials).
 */
function parameters(spec: Record<string, Param>, coherent?: fc.Arbitrary<Params>): fc.Arbitrary<Params> {
  const entries = Object.entries(spec)
  const anyway = fc
    .tuple(
      ...entries.map(([name, param]) =>
        fc.oneof(
          { weight: 2, arbitrary: fc.constant<Pairs>([]) },
          { weight: 5, arbitrary: param.any.map((v): Pairs => [pairOf(name, v)]) },
          { weight: 1, arbitrary: fc.tuple(param.any, param.any).map(([a, b]): Pairs => [pairOf(name, a), pairOf(name, b)]) },
          { weight: 1, arbitrary: fc.constant<Pairs>([pairOf(name, undefined)]) },
        ),
      ),
    )
    .map((groups): Params => ({ pairs: groups.flat() }))
  const good = nearlyGood(fc.tuple(...entries.map(([name, param]) => param.good.map((v) => pairOf(name, v))))).map((pairs): Params => ({ pairs }))
  const known = fc.oneof(
    { weight: 3, arbitrary: anyway },
    { weight: 2, arbitrary: good },
    ...(coherent ? [{ weight: 3, arbitrary: coherent }] : []),
  )
  return fc.tuple(known, extraPairs).map(([params, more]) => ({ ...params, pairs: [...params.pairs, ...more] }))
}

/** The credentials a client registered for, as it would send them (RFC 6749 §2.3.1). */
function credentialsOf(client: FuzzClient): Params {
  if (client.token_endpoint_auth_method === 'client_secret_basic') {
    return { pairs: [], authorization: basic(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret ?? '')}`) }
  }
  const pairs: Pairs = [pairOf('client_id', { text: client.client_id })]
  if (client.token_endpoint_auth_method === 'client_secret_post') pairs.push(pairOf('client_secret', { text: client.client_secret ?? '' }))
  return { pairs }
}

/** Parameters that belong together, with one of them broken. */
function coherentParams(make: fc.Arbitrary<Params>): fc.Arbitrary<Params> {
  return make.chain((params) => nearlyGood(fc.constant(params.pairs)).map((pairs) => ({ ...params, pairs })))
}

function toWire(value: Value): string {
  if ('wire' in value) return value.wire
  if ('text' in value) return encodeURIComponent(value.text)
  return encodeURIComponent(typeof value.json === 'string' ? value.json : JSON.stringify(value.json) ?? '')
}

/** `a=b&c=d` as sent, repeats and all. */
function formOf(pairs: Pairs): string {
  return pairs.map(([name, value]) => (value === undefined ? toWire(name) : `${toWire(name)}=${toWire(value)}`)).join('&')
}

function jsonValueOf(value: Value | undefined): unknown {
  if (value === undefined) return null
  if ('json' in value) return value.json
  if ('text' in value) return value.text
  return value.wire
}

/** A JSON object written by hand, so that `__proto__` and repeated keys really are on the wire. */
function jsonOf(pairs: Pairs): string {
  const nameOf = (name: Value) => ('text' in name ? name.text : 'wire' in name ? name.wire : JSON.stringify(name.json))
  return `{${pairs.map(([name, value]) => `${JSON.stringify(nameOf(name))}:${JSON.stringify(jsonValueOf(value)) ?? 'null'}`).join(',')}}`
}

// ---------------------------------------------------------------- headers and bodies

const basic = (credentials: string | Buffer) => `Basic ${Buffer.from(credentials).toString('base64')}`

const MALFORMED_AUTHORIZATION = [
  'Basic', 'Basic ', 'Basic !!!!', 'Basic ====', 'Basic YQ', 'Basic Og==', 'Bearer fz', 'Digest username="fz"', 'Basic  ' + 'A'.repeat(4000),
  basic('no-colon-at-all'), basic('%zz:%zz'), basic('%:%'), basic(':'), basic('a:b:c'), basic('__proto__:constructor'),
  basic(Buffer.from([0xff, 0xfe, 0x3a, 0xc3, 0x28])), basic('client%ZZid:secret'), basic('+:+'), basic(`${'x'.repeat(5000)}:y`),
  'basic ' + Buffer.from('a:b').toString('base64'), 'BASIC YTpi', 'Basic YTpi extra', 'Basic\tYTpi',
]

function authorization(context: FuzzContext): fc.Arbitrary<string | undefined> {
  const real = context.clients.flatMap((client) => [
    basic(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret ?? '')}`),
    basic(`${client.client_id}:${client.client_secret ?? 'wrong'}`),
    basic(`${encodeURIComponent(client.client_id)}:wrong-secret`),
    basic(`${encodeURIComponent(client.client_id)}:`),
  ])
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: from(real, 'Basic YTpi') },
    { weight: 3, arbitrary: fc.constantFrom(...MALFORMED_AUTHORIZATION) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 60 }) },
  )
}

const CONTENT_TYPES = [
  'application/x-www-form-urlencoded', 'application/json', 'application/x-www-form-urlencoded; charset=ISO-8859-1',
  'application/json; charset=utf-16', 'text/plain', 'text/html', 'multipart/form-data; boundary=fz', 'application/xml',
  'application/octet-stream', 'application/jsonx', 'application/x-www-form-urlencoded, application/json', ';;;',
  'APPLICATION/JSON', '*/*', 'application/json; charset=utf-8; q=1', 'application/merge-patch+json', 'form',
]

type BodyKind = 'form' | 'json' | 'bytes' | 'none'

interface Shape {
  endpoint: Endpoint
  method: string
  path: string
  pairs: Pairs
  /** Where the parameters go and how they are encoded. */
  kind: BodyKind | 'query'
  contentType?: string
  authorization?: string
  origin?: string
  cookie?: string
  fetchSite?: string
  bytes?: Uint8Array
}

function toRequest(shape: Shape): FuzzRequest {
  const headers: Record<string, string> = {}
  if (shape.authorization !== undefined) headers.authorization = shape.authorization
  if (shape.origin !== undefined) headers.origin = shape.origin
  if (shape.cookie !== undefined) headers.cookie = shape.cookie
  if (shape.fetchSite !== undefined) headers['sec-fetch-site'] = shape.fetchSite
  if (shape.method === 'OPTIONS') headers['access-control-request-method'] = 'POST'
  let path = shape.path
  let body: Buffer | undefined
  if (shape.kind === 'query') {
    const query = formOf(shape.pairs)
    if (query) path += `?${query}`
  } else if (!['GET', 'HEAD'].includes(shape.method)) {
    if (shape.kind === 'form') body = Buffer.from(formOf(shape.pairs), 'latin1')
    if (shape.kind === 'json') body = Buffer.from(jsonOf(shape.pairs))
    if (shape.kind === 'bytes') body = Buffer.from(shape.bytes ?? [])
  }
  if (shape.contentType !== undefined && body !== undefined) headers['content-type'] = shape.contentType
  return { endpoint: shape.endpoint, method: shape.method, path, headers, body }
}

const ANY_METHOD = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']

function method(usual: string[]) {
  return fc.oneof({ weight: 19, arbitrary: fc.constantFrom(...usual) }, { weight: 1, arbitrary: fc.constantFrom(...ANY_METHOD) })
}

function contentTypeFor(kind: BodyKind | 'query') {
  const matching = kind === 'json' ? 'application/json' : 'application/x-www-form-urlencoded'
  return fc.oneof({ weight: 12, arbitrary: fc.constant<string | undefined>(matching) }, { weight: 3, arbitrary: fc.constantFrom<string | undefined>(...CONTENT_TYPES, undefined) }, { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) })
}

function bodyKind(usual: BodyKind) {
  return fc.oneof({ weight: 8, arbitrary: fc.constant<BodyKind>(usual) }, { weight: 2, arbitrary: fc.constantFrom<BodyKind>('form', 'json', 'bytes', 'none') })
}

const CROSS_ORIGINS = ['https://chatgpt.com', 'https://evil.example', 'null', 'http://localhost:6274']

/** What a browser says about where a request came from; `browser` adds the gateway's own origin, as its consent page posts. */
function provenance(context: FuzzContext, browser: boolean) {
  if (!browser) return fc.record({ origin: fc.option(fc.constantFrom(...CROSS_ORIGINS), { nil: undefined }), fetchSite: fc.constant(undefined) })
  const unsaid = fc.constant(undefined)
  return fc.record({
    origin: fc.oneof({ weight: 3, arbitrary: unsaid }, { weight: 3, arbitrary: fc.constant(context.gatewayOrigin) }, { weight: 1, arbitrary: fc.constantFrom(...CROSS_ORIGINS) }),
    fetchSite: fc.oneof({ weight: 3, arbitrary: unsaid }, { weight: 3, arbitrary: fc.constant('same-origin') }, { weight: 1, arbitrary: fc.constantFrom('cross-site', 'same-site', 'none', 'SAME-ORIGIN') }),
  })
}

function shaped(endpoint: Endpoint, paths: fc.Arbitrary<string>, methods: fc.Arbitrary<string>, params: fc.Arbitrary<Params>, usual: BodyKind | 'query', context: FuzzContext, browser = false): fc.Arbitrary<FuzzRequest> {
  const kinds = usual === 'query' ? fc.oneof({ weight: 9, arbitrary: fc.constant<BodyKind | 'query'>('query') }, { weight: 1, arbitrary: bodyKind('form') }) : bodyKind(usual)
  return fc
    .record({
      path: paths,
      method: methods,
      params,
      kind: kinds,
      authorization: authorization(context),
      provenance: provenance(context, browser),
      bytes: fc.uint8Array({ maxLength: 64 }),
    })
    .chain(({ params, authorization, provenance, ...shape }) =>
      contentTypeFor(shape.kind).map((contentType) =>
        toRequest({ ...shape, ...provenance, pairs: params.pairs, authorization: params.authorization ?? authorization, cookie: params.cookie, endpoint, contentType }),
      ),
    )
}

// ---------------------------------------------------------------- endpoints

function endpoints(context: FuzzContext) {
  const clientIds = from(context.clients.map((client) => client.client_id), 'none')
  const secrets = from(context.clients.map((client) => client.client_secret ?? 'none'), 'none')
  const redirects = from(context.redirectUris, 'https://chatgpt.com/connector/oauth/x')
  // RFC 8252 §7.3: any port on a registered loopback URI; the rest are near misses.
  const loopbackPort = fc.constant('http://127.0.0.1:5173/callback')
  const loopbackVariants = fc.constantFrom('http://localhost/callback', 'http://127.0.0.1/callback/', 'http://127.0.0.1:1/callback?x=1', 'http://[::1]/callback')
  const challenges = from(context.codes.map((code) => code.challenge), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM')
  const verifiers = from(context.codes.map((code) => code.verifier), 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')
  const states = from(context.states, 'none')
  const codes = from(context.codes.map((code) => code.code), 'none')
  const refreshTokens = from(context.refreshTokens.map((refresh) => refresh.token), 'none')
  const scopes = fc.constantFrom('openid', 'openid offline_access', 'profile email', '', 'openid  openid')
  const wrongScopes = fc.constantFrom('openid admin', 'admin', 'openid\toffline_access', 'OPENID')
  const resources = fc.constantFrom(context.mcpResource, `${context.mcpResource}/`)
  const wrongResources = fc.constantFrom('https://evil.example/mcp', `${context.mcpResource}/x`, `${context.mcpResource}?x=1`)
  const wellKnownSuffix = fc.constantFrom('', '/mcp', '/mcp/', '/x/y', '/%zz', '/..%2f..%2fetc', `/${'s'.repeat(300)}`, '/%3Cfz-tag%3E')

  const authorizeParameters = parameters({
    response_type: plausible(fc.constant('code'), fc.constantFrom('token', 'code id_token', 'CODE')),
    client_id: plausible(clientIds),
    redirect_uri: plausible(fc.oneof(redirects, loopbackPort), loopbackVariants),
    code_challenge: plausible(challenges, verifiers),
    code_challenge_method: plausible(fc.constant('S256'), fc.constantFrom('plain', 's256')),
    scope: plausible(scopes, wrongScopes),
    state: plausible(fc.string({ maxLength: 20 })),
    resource: plausible(resources, wrongResources),
  })
  const callbackParameters = parameters({
    state: plausible(states),
    code: plausible(fc.string({ minLength: 1, maxLength: 40 })),
    iss: plausible(fc.constant(context.upstreamIssuer), fc.constantFrom('https://evil.example', `${context.upstreamIssuer}/`)),
    error: plausible(fc.constantFrom('access_denied', 'login_required'), fc.constantFrom('server_error', 'invalid_request', 'fz_unknown')),
    error_description: plausible(fc.string({ maxLength: 40 })),
  })
  const clientParameters = {
    client_id: plausible(clientIds),
    client_secret: plausible(secrets),
  }
  const credentials = (client: number) => credentialsOf(context.clients[client] ?? { client_id: 'none', token_endpoint_auth_method: 'none', redirect_uris: [] })
  // A real code with its verifier and redirect URI, from the client it was issued to.
  const codeGrants = context.codes.map((grant) => {
    const { pairs, authorization } = credentials(grant.client)
    return {
      authorization,
      pairs: [
        pairOf('grant_type', { text: 'authorization_code' }),
        pairOf('code', { text: grant.code }),
        pairOf('code_verifier', { text: grant.verifier }),
        pairOf('redirect_uri', { text: context.clients[grant.client]?.redirect_uris[0] ?? '' }),
        ...pairs,
      ],
    }
  })
  const refreshGrants = context.refreshTokens.map((refresh) => {
    const { pairs, authorization } = credentials(refresh.client)
    return { authorization, pairs: [pairOf('grant_type', { text: 'refresh_token' }), pairOf('refresh_token', { text: refresh.token }), ...pairs] }
  })
  const revocations = context.refreshTokens.map((refresh) => {
    const { pairs, authorization } = credentials(refresh.client)
    return { authorization, pairs: [pairOf('token', { text: refresh.token }), pairOf('token_type_hint', { text: 'refresh_token' }), ...pairs] }
  })
  const tokenParameters = parameters(
    {
      grant_type: plausible(fc.constantFrom('authorization_code', 'refresh_token'), fc.constantFrom('client_credentials', 'password', 'urn:ietf:params:oauth:grant-type:device_code')),
      code: plausible(codes, states),
      code_verifier: plausible(verifiers, challenges),
      redirect_uri: plausible(redirects, loopbackVariants),
      refresh_token: plausible(refreshTokens, codes),
      scope: plausible(scopes, wrongScopes),
      resource: plausible(resources, wrongResources),
      client_id: plausible(clientIds),
      client_secret: plausible(secrets),
    },
    coherentParams(from<Params>([...codeGrants, ...refreshGrants], { pairs: [] })),
  )
  const revokeParameters = parameters(
    {
      token: plausible(fc.oneof(refreshTokens, fc.string({ minLength: 1, maxLength: 40 })), codes),
      token_type_hint: plausible(fc.constantFrom('refresh_token', 'access_token'), fc.constantFrom('id_token', 'code')),
      client_id: plausible(clientIds),
      client_secret: plausible(secrets),
    },
    coherentParams(
      fc.oneof(
        from<Params>(revocations, { pairs: [] }),
        fc.tuple(fc.nat({ max: Math.max(0, context.clients.length - 1) }), fc.string({ minLength: 1, maxLength: 40 })).map(([client, token]) => {
          const { pairs, authorization } = credentials(client)
          return { authorization, pairs: [pairOf('token', { text: token }), ...pairs] }
        }),
      ),
    ),
  )
  const jsonish = (good: fc.Arbitrary<unknown>, nearMiss: fc.Arbitrary<unknown> = good): Param => {
    const goodValues = good.map((json): Value => ({ json }))
    return { good: goodValues, any: fc.oneof({ weight: 3, arbitrary: goodValues }, { weight: 1, arbitrary: nearMiss.map((json): Value => ({ json })) }, { weight: 2, arbitrary: hostile }) }
  }
  // The consent page's answer: its hidden fields and its cookie, real (each counts once, so most are replays), mixed up or broken.
  const pendings = from(context.consents.map((consent) => consent.pending), 'none')
  const csrfs = from(context.consents.map((consent) => consent.csrf), 'none')
  const cookieName = context.consents[0]?.cookie.split('=')[0] ?? 'gateway-consent'
  const cookies = fc.oneof(
    { weight: 4, arbitrary: from(context.consents.map((consent) => consent.cookie), `${cookieName}=none`) },
    { weight: 2, arbitrary: fc.constantFrom(`${cookieName}=`, `${cookieName}=x.y.z`, `${cookieName}=${'a'.repeat(9000)}`, `theme=dark; ${cookieName}=..`, `${cookieName}=%zz; ${cookieName}=%00`) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 80 }).map((value) => `${cookieName}=${value}`) },
  )
  const answered = fc.tuple(from(context.consents, { pending: 'none', csrf: 'none', cookie: `${cookieName}=none` }), fc.constantFrom('approve', 'deny')).map(([consent, decision]): Params => ({
    pairs: [pairOf('pending', { text: consent.pending }), pairOf('csrf', { text: consent.csrf }), pairOf('decision', { text: decision })],
    cookie: consent.cookie,
  }))
  const consentParameters = fc
    .tuple(
      parameters(
        { pending: plausible(pendings, states), csrf: plausible(csrfs, codes), decision: plausible(fc.constantFrom('approve', 'deny'), fc.constantFrom('Approve', 'yes', 'allow', 'approve ')) },
        coherentParams(answered),
      ),
      fc.option(cookies, { nil: undefined }),
    )
    .map(([params, cookie]): Params => ({ ...params, cookie: params.cookie ?? cookie }))
  const registerParameters = parameters({
    redirect_uris: {
      good: fc.array(fc.oneof(redirects, loopbackPort), { minLength: 1, maxLength: 3 }).map((json): Value => ({ json })),
      any: fc.oneof(fc.array(fc.oneof(redirects, loopbackVariants, fc.constantFrom(...HOSTILE_TEXT)), { maxLength: 24 }).map((json): Value => ({ json })), hostile),
    },
    token_endpoint_auth_method: jsonish(fc.constantFrom('none', 'client_secret_basic', 'client_secret_post'), fc.constantFrom('private_key_jwt', 'NONE', 'tls_client_auth')),
    grant_types: jsonish(fc.constantFrom(['authorization_code'], ['authorization_code', 'refresh_token']), fc.array(fc.constantFrom('authorization_code', 'refresh_token', 'implicit', '__proto__'), { maxLength: 4 })),
    response_types: jsonish(fc.constant(['code']), fc.array(fc.constantFrom('code', 'token'), { maxLength: 3 })),
    client_name: jsonish(fc.oneof(fc.constantFrom(...HOSTILE_TEXT), fc.string({ maxLength: 40 }))),
    scope: jsonish(scopes, wrongScopes),
  })

  return {
    metadata: shaped('metadata', fc.tuple(fc.constantFrom('/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'), wellKnownSuffix).map(([a, b]) => a + b), method(['GET']), parameters({}), 'query', context),
    'protected-resource': shaped('protected-resource', wellKnownSuffix.map((suffix) => `/.well-known/oauth-protected-resource${suffix}`), method(['GET']), parameters({ resource: anything }), 'query', context),
    register: shaped('register', fc.constant('/register'), method(['POST']), registerParameters, 'json', context),
    authorize: shaped('authorize', fc.constant('/authorize'), method(['GET', 'GET', 'POST', 'HEAD']), authorizeParameters, 'query', context),
    consent: shaped('consent', fc.constant('/consent'), method(['POST']), consentParameters, 'form', context, true),
    callback: shaped('callback', fc.constant('/callback'), method(['GET']), callbackParameters, 'query', context),
    token: shaped('token', fc.constant('/token'), method(['POST']), tokenParameters, 'form', context),
    revoke: shaped('revoke', fc.constant('/revoke'), method(['POST']), revokeParameters, 'form', context),
    health: shaped('health', fc.constantFrom('/healthz', '/readyz'), method(['GET']), parameters({}), 'query', context),
    unknown: shaped(
      'unknown',
      fc.oneof(
        fc.constantFrom('/', '/authorize/', '//authorize', '/AUTHORIZE', '/token/..', '/%2e%2e/token', '/register/x', '/.well-known/', '/callback/x', '/admin', '/.env', `/${'p'.repeat(3000)}`),
        fc.array(fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 8 }).map(encodeURIComponent), fc.constantFrom(...HOSTILE_WIRE)), { minLength: 1, maxLength: 4 }).map((segments) => `/${segments.join('/')}`),
      ),
      method(ANY_METHOD),
      parameters({ client_id: anything }),
      'query',
      context,
    ),
  } satisfies Record<Endpoint, fc.Arbitrary<FuzzRequest>>
}

/** One request for any endpoint, the flows' endpoints more often. */
export function anyRequest(context: FuzzContext): fc.Arbitrary<FuzzRequest> {
  const all = endpoints(context)
  const weights: Record<Endpoint, number> = { metadata: 1, 'protected-resource': 1, register: 3, authorize: 4, consent: 2, callback: 3, token: 4, revoke: 2, health: 1, unknown: 2 }
  return fc.oneof(...(Object.keys(all) as Endpoint[]).map((endpoint) => ({ weight: weights[endpoint], arbitrary: all[endpoint] })))
}

// ---------------------------------------------------------------- rules

export interface FuzzAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** Statuses an upstream fault may cause, on the endpoints that call the upstream. */
const UPSTREAM_STATUSES = new Set([502, 503, 504])
const CALLS_UPSTREAM = new Set<Endpoint>(['authorize', 'consent', 'callback', 'token', 'revoke', 'health'])
/** RFC 6749 §5.2: error codes and descriptions are printable ASCII without `"` and `\`. */
const ERROR_CODE = /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/

/** The tags of the gateway's own page template: the only markup a page may hold. */
/** The tags the gateway's own pages use (the error page and the consent page, with its optional parts); anything else was reflected. */
const TEMPLATE_TAGS = new Set([
  ...tagsOf(renderErrorPage('e', 'd', 'h')),
  ...tagsOf(renderConsentPage({ clientName: 'n', publisher: 'p', redirectUri: new URL('https://a.example/cb'), scopes: ['openid', 'x'], action: '/consent', pending: 'p', csrf: 'c' })),
  ...tagsOf(renderConsentPage({ redirectUri: new URL('http://127.0.0.1/cb'), scopes: [], action: '/consent', pending: 'p', csrf: 'c' })),
])

function tagsOf(html: string): string[] {
  return [...html.matchAll(/<\/?([a-zA-Z!][a-zA-Z0-9-]*)/g)].map((match) => match[1]!.toLowerCase())
}

function header(answer: FuzzAnswer, name: string): string | undefined {
  const value = answer.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

function decodedPath(path: string): string {
  const raw = path.split('?')[0]!
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

/** Whether the request reached a browser endpoint (the HTML page and redirects), as the router sees it. */
export function isBrowserRequest(request: FuzzRequest): boolean {
  const path = decodedPath(request.path)
  if (path === '/authorize') return ['GET', 'HEAD', 'POST'].includes(request.method)
  if (path === '/callback') return ['GET', 'HEAD'].includes(request.method)
  if (path === '/consent') return request.method === 'POST'
  return false
}

/** A redirect target is fine when it is the upstream's authorization endpoint or a URI a fuzzer client registered. */
function allowedRedirect(location: string, context: FuzzContext): boolean {
  if (!URL.canParse(location)) return false
  const target = new URL(location)
  if (location.startsWith(`${context.upstreamAuthorizationEndpoint}?`)) return true
  return context.redirectUris.some((registered) => {
    const uri = new URL(registered)
    const loopback = uri.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(uri.hostname)
    return uri.protocol === target.protocol && uri.hostname === target.hostname && uri.pathname === target.pathname && (uri.port === target.port || loopback)
  })
}

/** Every rule the answer breaks; empty when it keeps them all. */
export function problemsWith(request: FuzzRequest, answer: FuzzAnswer, context: FuzzContext): string[] {
  const problems: string[] = []
  const { status } = answer
  if (status >= 500 && !(UPSTREAM_STATUSES.has(status) && CALLS_UPSTREAM.has(request.endpoint))) problems.push(`status ${status}`)

  const location = header(answer, 'location')
  const browser = isBrowserRequest(request)
  if (location !== undefined) {
    if (!browser) problems.push(`a redirect from a back-channel endpoint to ${location}`)
    else if (!allowedRedirect(location, context)) problems.push(`a redirect to ${location}, which no fuzzer client registered`)
    else {
      // RFC 6749 §4.1.2.1: the error parameters sent back to the client keep the same character set.
      const back = new URL(location).searchParams
      for (const name of ['error', 'error_description']) {
        const value = back.get(name)
        if (value !== null && !ERROR_CODE.test(value)) problems.push(`a redirect with ${name} outside RFC 6749's character set: ${JSON.stringify(value).slice(0, 200)}`)
      }
    }
  }
  const hasBody = request.method !== 'HEAD' && answer.body.length > 0
  if (!hasBody) return problems

  const contentType = header(answer, 'content-type') ?? ''
  if (browser && !(status >= 300 && status < 400)) {
    if (!contentType.startsWith('text/html')) problems.push(`a browser endpoint answered ${contentType || 'without a content type'}`)
    if (!header(answer, 'content-security-policy')) problems.push('a page without Content-Security-Policy')
    const foreign = tagsOf(answer.body).filter((tag) => !TEMPLATE_TAGS.has(tag))
    if (foreign.length) problems.push(`reflected markup: <${foreign.join('>, <')}>`)
    return problems
  }
  if (!browser) {
    if (!contentType.startsWith('application/json')) {
      problems.push(`a back-channel endpoint answered ${contentType || 'without a content type'}`)
      return problems
    }
    let json: unknown
    try {
      json = JSON.parse(answer.body)
    } catch {
      problems.push('a JSON content type over a body that is not JSON')
      return problems
    }
    if (status >= 400) {
      const { error, error_description: description } = (json ?? {}) as { error?: unknown; error_description?: unknown }
      if (typeof error !== 'string' || !ERROR_CODE.test(error)) problems.push(`an error without an RFC 6749 error code: ${answer.body.slice(0, 200)}`)
      if (description !== undefined && (typeof description !== 'string' || !ERROR_CODE.test(description))) {
        problems.push(`an error_description outside RFC 6749's character set: ${JSON.stringify(description).slice(0, 200)}`)
      }
    }
  }
  return problems
}
