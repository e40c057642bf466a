/**
 * The gateway as clients see it at publicUrl: its metadata (RFC 8414) and
 * whether it agrees with the configuration, CORS for browser-based clients,
 * and the protected resource metadata (RFC 9728) that leads MCP clients from
 * the MCP URL to the gateway.
 */
import type { Settings } from '../config/schema.ts'
import { describeAnswer, jsonObject, type Outcome, type Requester } from './http.ts'
import type { Report } from './report.ts'

/** The Origin of the browser-based client the CORS checks play. */
export const BROWSER_ORIGIN = 'https://mcp-client.example'

const CORS_FIX = 'the gateway answers CORS itself: make the ingress or proxy in front of it pass OPTIONS requests through (not answer them, nor ask for authentication) and keep the Access-Control-* response headers'

const withoutTrailingSlash = (value: string) => value.replace(/\/+$/, '')

/** RFC 9728 §3.1: the resource's path follows the well-known suffix. */
export function protectedResourceUrl(base: string, resource: string): string {
  const path = withoutTrailingSlash(new URL(resource).pathname)
  return `${withoutTrailingSlash(base)}/.well-known/oauth-protected-resource${path}`
}

/** Fetches the gateway's metadata; undefined when there is none to check further (the failure is reported). */
export async function checkGatewayMetadata(report: Report, http: Requester, settings: Settings): Promise<Record<string, unknown> | undefined> {
  const name = 'gateway metadata'
  const url = `${settings.publicUrl}/.well-known/oauth-authorization-server`
  const answer = await http.request(url, { headers: { accept: 'application/json', origin: BROWSER_ORIGIN } })
  if (!answer.ok) {
    report.fail(name, `gateway unreachable: ${answer.problem} (${url})`, `check that the gateway runs and that publicUrl (GATEWAY_PUBLIC_URL) ${settings.publicUrl} is the address clients reach it at: DNS, ingress, TLS certificate`)
    return undefined
  }
  const metadata = answer.status === 200 ? jsonObject(answer) : undefined
  if (!metadata) {
    report.fail(name, `${url} answers ${describeAnswer(answer)}`, `route every path of ${settings.publicUrl}, /.well-known/ included, to the gateway`)
    return undefined
  }
  report.pass(name, url)
  checkIssuer(report, settings, metadata)
  checkEndpoints(report, settings, metadata)
  checkGatewayPkce(report, metadata)
  checkAllowOrigin(report, 'gateway CORS', `GET ${url}`, answer)
  return metadata
}

function checkIssuer(report: Report, settings: Settings, metadata: Record<string, unknown>) {
  const name = 'gateway issuer'
  if (metadata.issuer === settings.publicUrl) return report.pass(name, `${settings.publicUrl}, as configured`)
  report.fail(
    name,
    `the gateway at ${settings.publicUrl} says its issuer is ${JSON.stringify(metadata.issuer)}`,
    `set publicUrl (GATEWAY_PUBLIC_URL) of every gateway replica to exactly the URL clients use, ${settings.publicUrl} (no path, no trailing slash), and restart: clients refuse metadata whose issuer differs from where they fetched it (RFC 8414 §3.3)`,
  )
}

function checkEndpoints(report: Report, settings: Settings, metadata: Record<string, unknown>) {
  const name = 'gateway endpoints'
  const problems: string[] = []
  for (const key of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint']) {
    const value = metadata[key]
    if (typeof value !== 'string') problems.push(`${key} is missing`)
    else if (!value.startsWith(`${settings.publicUrl}/`)) problems.push(`${key} is ${value}`)
  }
  if (!problems.length) return report.pass(name, `all under ${settings.publicUrl}`)
  report.fail(name, `${problems.join(', ')}; expected under ${settings.publicUrl}`, `the gateway builds its endpoints from publicUrl: set publicUrl (GATEWAY_PUBLIC_URL) of every replica to ${settings.publicUrl}, and make sure nothing in front of the gateway rewrites its metadata`)
}

function checkGatewayPkce(report: Report, metadata: Record<string, unknown>) {
  const name = 'gateway PKCE S256'
  const methods = metadata.code_challenge_methods_supported
  if (Array.isArray(methods) && methods.includes('S256')) return report.pass(name, 'code_challenge_methods_supported includes S256')
  report.fail(name, `code_challenge_methods_supported is ${JSON.stringify(methods)}`, 'this gateway always advertises S256, so the metadata comes from something else: route publicUrl to the gateway')
}

function checkAllowOrigin(report: Report, name: string, what: string, answer: Outcome & { ok: true }) {
  const allowed = answer.headers.get('access-control-allow-origin')
  if (allowed === '*' || allowed === BROWSER_ORIGIN) return report.pass(name, `${what} allows Origin ${BROWSER_ORIGIN}`)
  report.fail(name, `${what} with Origin ${BROWSER_ORIGIN} answers Access-Control-Allow-Origin ${JSON.stringify(allowed)}`, CORS_FIX)
}

/** A browser's preflight before a cross-origin POST; the answer must allow the origin, the method and the headers asked for. */
export async function checkPreflight(report: Report, http: Requester, name: string, url: string, requestHeaders: string[]) {
  const answer = await http.request(url, {
    method: 'OPTIONS',
    headers: { origin: BROWSER_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': requestHeaders.join(', ') },
  })
  if (!answer.ok) return report.fail(name, `${answer.problem} (OPTIONS ${url})`, CORS_FIX)
  const listed = (header: string) => (answer.headers.get(header) ?? '').split(',').map((item) => item.trim().toLowerCase())
  const problems: string[] = []
  if (answer.status < 200 || answer.status >= 300) problems.push(`status ${answer.status}`)
  const origin = answer.headers.get('access-control-allow-origin')
  if (origin !== '*' && origin !== BROWSER_ORIGIN) problems.push(`Access-Control-Allow-Origin ${JSON.stringify(origin)}`)
  const methods = listed('access-control-allow-methods')
  if (!methods.includes('post') && !methods.includes('*')) problems.push('POST not in Access-Control-Allow-Methods')
  const headers = listed('access-control-allow-headers')
  const missing = requestHeaders.filter((header) => !headers.includes(header) && !headers.includes('*'))
  if (missing.length) problems.push(`${missing.join(', ')} not in Access-Control-Allow-Headers`)
  if (!problems.length) return report.pass(name, `OPTIONS ${url} allows POST from ${BROWSER_ORIGIN} with ${requestHeaders.join(', ')}`)
  report.fail(name, `OPTIONS ${url} answers ${problems.join(', ')}`, CORS_FIX)
}

/** Problems with a protected resource metadata document for `settings`; empty when it is right. */
function resourceDocumentProblems(settings: Settings, document: Record<string, unknown>): string[] {
  const problems: string[] = []
  const resource = document.resource
  if (typeof resource !== 'string' || withoutTrailingSlash(resource) !== withoutTrailingSlash(settings.mcpResource)) {
    problems.push(`its resource is ${JSON.stringify(resource)}, not ${settings.mcpResource}`)
  }
  const servers = document.authorization_servers
  if (!Array.isArray(servers) || !servers.includes(settings.publicUrl)) {
    problems.push(`its authorization_servers ${JSON.stringify(servers)} do not name the gateway ${settings.publicUrl}`)
  }
  return problems
}

/** What the gateway serves for the MCP URL (routes/protected-resource.ts), for the ingress to route the MCP host's well-known paths to. */
export async function checkGatewayResourceMetadata(report: Report, http: Requester, settings: Settings) {
  const name = 'gateway protected resource metadata'
  const url = protectedResourceUrl(settings.publicUrl, settings.mcpResource)
  const answer = await http.request(url, { headers: { accept: 'application/json' } })
  if (!answer.ok) return report.fail(name, `${answer.problem} (${url})`, 'the gateway answered its metadata but not this: check the ingress routes')
  const document = answer.status === 200 ? jsonObject(answer) : undefined
  if (!document) {
    return report.fail(name, `${url} answers ${describeAnswer(answer)}`, `the gateway serves it for mcpResource only: set mcpResource (MCP_RESOURCE) of every replica to the MCP URL clients use, ${settings.mcpResource}, and restart`)
  }
  const problems = resourceDocumentProblems(settings, document)
  if (!problems.length) return report.pass(name, `${url} names ${settings.mcpResource} and the gateway`)
  report.fail(name, `${url}: ${problems.join('; ')}`, `set mcpResource (MCP_RESOURCE) and publicUrl (GATEWAY_PUBLIC_URL) of every replica to ${settings.mcpResource} and ${settings.publicUrl}, and restart`)
}

/**
 * What an MCP client does first: call the MCP URL without a token, read the
 * 401's `resource_metadata` (RFC 9728 §5.1), or else look at the MCP
 * origin's well-known paths, and follow that document to the gateway.
 */
export async function checkMcpDiscovery(report: Report, http: Requester, settings: Settings) {
  const challengeUrl = await checkMcpChallenge(report, http, settings)
  if (challengeUrl === null) return
  const name = 'protected resource metadata for the MCP URL'
  const origin = new URL(settings.mcpResource).origin
  const candidates = challengeUrl ? [challengeUrl] : [protectedResourceUrl(origin, settings.mcpResource), `${origin}/.well-known/oauth-protected-resource`]
  const seen: string[] = []
  for (const url of candidates) {
    const answer = await http.request(url, { headers: { accept: 'application/json' } })
    const document = answer.ok && answer.status === 200 ? jsonObject(answer) : undefined
    if (!document) {
      seen.push(`${url}: ${answer.ok ? describeAnswer(answer) : answer.problem}`)
      continue
    }
    const problems = resourceDocumentProblems(settings, document)
    if (!problems.length) return report.pass(name, `${url} names ${settings.mcpResource} and the gateway`)
    return report.fail(name, `${url}: ${problems.join('; ')}`, `MCP clients find this document for ${settings.mcpResource}: serve the gateway's ${protectedResourceUrl(settings.publicUrl, settings.mcpResource)} there (route the path to the gateway, or point the MCP server's resource_metadata at it)`)
  }
  report.fail(
    name,
    `none found: ${seen.join('; ')}`,
    `route ${protectedResourceUrl(origin, settings.mcpResource)} to the gateway at the ingress of ${origin}, or have the MCP server's 401 name resource_metadata="${protectedResourceUrl(settings.publicUrl, settings.mcpResource)}", or use front mode`,
  )
}

/** The resource_metadata URL the MCP server's 401 names; '' when it names none; null when the MCP URL answered no 401. */
async function checkMcpChallenge(report: Report, http: Requester, settings: Settings): Promise<string | null> {
  const name = 'MCP server challenge'
  const url = settings.mcpResource
  const answer = await http.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'oauth-gateway-doctor', version: '1' } } }),
  })
  if (!answer.ok) {
    report.fail(name, `MCP server unreachable: ${answer.problem} (${url})`, `check that mcpResource (MCP_RESOURCE) is the MCP URL clients use and that the MCP server${settings.front.enabled ? ' (behind the gateway, front.mcpUpstream)' : ''} answers there`)
    return null
  }
  if (answer.status !== 401) {
    report.fail(name, `POST ${url} without a token answers ${describeAnswer(answer)}, not 401`, 'MCP clients start signing in only on a 401 with a Bearer challenge: point mcpResource (MCP_RESOURCE) at the MCP endpoint itself and make the MCP server require a token there')
    return null
  }
  const challenge = answer.headers.get('www-authenticate') ?? ''
  const named = /resource_metadata="([^"]+)"/i.exec(challenge)?.[1]
  if (named && !URL.canParse(named)) {
    report.fail(name, `401 with resource_metadata="${named}", which is not an absolute URL`, `make the MCP server's 401 name resource_metadata="${protectedResourceUrl(settings.publicUrl, settings.mcpResource)}" (RFC 9728 §5.1)`)
    return null
  }
  if (named) {
    report.pass(name, `401 with resource_metadata="${named}"`)
    return named
  }
  report.warn(
    name,
    `401 without resource_metadata (WWW-Authenticate: ${JSON.stringify(challenge)}); clients fall back to the MCP origin's well-known paths`,
    `have the MCP server's 401 carry WWW-Authenticate: Bearer resource_metadata="${protectedResourceUrl(settings.publicUrl, settings.mcpResource)}" (RFC 9728 §5.1), or use front mode, which adds it`,
  )
  return ''
}
