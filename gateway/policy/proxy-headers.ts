/**
 * Front mode header policy, pure: which request headers reach the MCP server,
 * which response headers reach the client, and the RFC 9728 challenge the
 * gateway puts in the MCP server's 401s and 403s. No Fastify here.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { scopeNames } from './scopes.ts'
import { parseChallenges, quoted, serializeChallenges, type Challenge, type Parameter } from './www-authenticate.ts'

type Headers = Record<string, string | string[] | undefined>

/** RFC 9110 §7.6.1: meaningful for one connection only, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/**
 * What an MCP server reads from a request (MCP Streamable HTTP, RFC 9110
 * content headers, W3C trace context). Everything else, cookies included,
 * stays at the gateway.
 */
const FORWARDED_REQUEST = new Set([
  'authorization', 'accept', 'accept-encoding', 'accept-language',
  'content-type', 'content-length', 'content-encoding',
  'last-event-id', 'mcp-session-id', 'mcp-protocol-version',
  'origin', 'user-agent', 'traceparent', 'tracestate',
])

/** Headers named by `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionOptions(headers: Headers): Set<string> {
  const value = headers.connection
  const list = Array.isArray(value) ? value.join(',') : (value ?? '')
  return new Set(list.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean))
}

export interface ForwardedFor {
  /** The peer address of the connection the request came on. */
  clientAddress: string | undefined
  /** The public MCP origin, from configuration (never from Host). */
  publicUrl: URL
}

/** The request headers the MCP server gets, with the usual X-Forwarded-* so it can log and build URLs. */
export function requestHeadersFor(incoming: IncomingHttpHeaders, forwarded: ForwardedFor): Record<string, string> {
  const dropped = connectionOptions(incoming)
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || dropped.has(name) || HOP_BY_HOP.has(name)) continue
    if (!FORWARDED_REQUEST.has(name) && !name.startsWith('mcp-')) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const chain = [incoming['x-forwarded-for'], forwarded.clientAddress].flat().filter(Boolean)
  if (chain.length) headers['x-forwarded-for'] = chain.join(', ')
  headers['x-forwarded-proto'] = forwarded.publicUrl.protocol.slice(0, -1)
  headers['x-forwarded-host'] = forwarded.publicUrl.host
  return headers
}

/**
 * The MCP server's response headers minus hop-by-hop ones and its own CORS
 * headers: at the edge the gateway answers CORS for every route alike.
 */
export function responseHeadersFrom(incoming: Headers): Record<string, string | string[]> {
  const dropped = connectionOptions(incoming)
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(incoming)) {
    const lower = name.toLowerCase()
    if (value === undefined || dropped.has(lower) || HOP_BY_HOP.has(lower) || lower.startsWith('access-control-')) continue
    headers[lower] = value
  }
  return headers
}

export function isEventStream(headers: Headers): boolean {
  const type = headers['content-type']
  return typeof type === 'string' && /^text\/event-stream\b/i.test(type)
}

/** RFC 9728 §3.1: the metadata URL inserts the well-known segment before the resource's path. */
export function resourceMetadataUrl(resource: string): string {
  const url = new URL(resource)
  return `${url.origin}/.well-known/oauth-protected-resource${url.pathname.replace(/\/$/, '')}`
}

/** The scope parameter without offline_access; gone when nothing else is left. */
function withoutOfflineAccess(parameter: Parameter): Parameter[] {
  const names = scopeNames(parameter.value)
  if (!names.includes('offline_access')) return [parameter]
  const kept = names.filter((name) => name !== 'offline_access').join(' ')
  return kept ? [{ name: parameter.name, value: kept, raw: quoted(kept) }] : []
}

/** Schemes whose tokens the MCP server checks: their challenges are where clients look for `resource_metadata`. */
const TOKEN_SCHEMES = new Set(['bearer', 'dpop'])
const isTokenScheme = (challenge: Challenge) => TOKEN_SCHEMES.has(challenge.scheme.toLowerCase())
/** The header's fields as one value (RFC 9110 §5.3). */
const fieldValue = (header: string | string[] | undefined) => (Array.isArray(header) ? header.join(', ') : (header ?? '')).trim()

/**
 * Whether a response from the MCP server is about the token, so that its
 * challenge must name the gateway: every 401, and a 403 that carries a Bearer
 * or DPoP challenge (RFC 6750 §3.1 `insufficient_scope`). Any other 403 (a
 * Host or Origin check against DNS rebinding, a forbidden action) passes as
 * the server sent it: a challenge added there would send clients to sign in
 * again for a refusal that no token can lift.
 */
export function challengesToken(status: number, challenge: string | string[] | undefined): boolean {
  return status === 401 || (status === 403 && (parseChallenges(fieldValue(challenge)) ?? []).some(isTokenScheme))
}

/**
 * RFC 9728 §5.1: a challenge about the token (challengesToken) must send clients to the
 * gateway's protected resource metadata for the fronted resource. The MCP
 * server behind the gateway may name its own, an internal address clients
 * cannot reach or whose `resource` is not the URL they connected to (which
 * §3.3 makes them reject), so every challenge's `resource_metadata` is
 * replaced, and a Bearer or DPoP challenge without one gets it; every other
 * parameter (error, scope, error_description, realm) stays as the server
 * wrote it, except that `offline_access` leaves `scope`: it is the
 * authorization server's to offer, never the resource's to ask for (MCP
 * authorization 2026-07-28, SEP-2207). No challenge naming it at all: a
 * Bearer challenge is added. A value that does not parse as challenges
 * (RFC 9110 §11.6.1) is replaced by the gateway's own.
 */
export function gatewayChallenge(challenge: string | string[] | undefined, metadataUrl: string): string {
  const value = fieldValue(challenge)
  const ours: Parameter = { name: 'resource_metadata', value: metadataUrl, raw: quoted(metadataUrl) }
  const challenges = parseChallenges(value) ?? []
  let named = false
  const rewritten = challenges.map((each): Challenge => {
    if (each.token68 !== undefined) return each
    const has = each.parameters.some((parameter) => parameter.name.toLowerCase() === 'resource_metadata')
    if (!has && !isTokenScheme(each)) return each
    named = true
    const parameters = (has
      ? each.parameters.map((parameter) => (parameter.name.toLowerCase() === 'resource_metadata' ? ours : parameter))
      : [ours, ...each.parameters]
    ).flatMap((parameter) => (parameter.name.toLowerCase() === 'scope' ? withoutOfflineAccess(parameter) : [parameter]))
    return { ...each, parameters }
  })
  if (!named) rewritten.push({ scheme: 'Bearer', parameters: [ours] })
  return serializeChallenges(rewritten)
}
