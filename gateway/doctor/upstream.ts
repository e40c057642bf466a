/**
 * The upstream (my.neonpanel.com) as the gateway needs it: its metadata found
 * the way the gateway finds it, PKCE S256, and each endpoint the gateway
 * calls answering at all.
 */
import type { Settings } from '../config/schema.ts'
import { identitySourceFor } from '../policy/identity.ts'
import { describeAnswer, jsonObject, type Requester } from './http.ts'
import type { Report } from './report.ts'

/** The upstream's endpoints, from discovery or upstream.endpoints, and its metadata when discovered. */
export interface UpstreamView {
  authorizationEndpoint: string
  tokenEndpoint: string
  revocationEndpoint?: string | undefined
  registrationEndpoint?: string | undefined
  metadata?: Record<string, unknown> | undefined
}

const withoutTrailingSlash = (value: string) => value.replace(/\/+$/, '')

/**
 * Where the gateway looks for the metadata, in its order (upstream/index.ts):
 * RFC 8414, then OpenID discovery, for the issuer as written and then with a
 * trailing slash added or removed.
 */
export function discoveryUrls(issuer: string): string[] {
  const spellings = [issuer, issuer.endsWith('/') ? withoutTrailingSlash(issuer) : `${issuer}/`]
  const urls = spellings.flatMap((spelling) => {
    const url = new URL(spelling)
    const path = url.pathname === '/' ? '' : url.pathname
    const directory = url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/`
    return [`${url.origin}/.well-known/oauth-authorization-server${path}`, `${url.origin}${directory}.well-known/openid-configuration`]
  })
  return [...new Set(urls)]
}

/** A URL a metadata document names, when it is one. */
function urlIn(metadata: Record<string, unknown> | undefined, key: string): string | undefined {
  const value = metadata?.[key]
  return typeof value === 'string' && URL.canParse(value) ? value : undefined
}

function unreachableFix(origin: string) {
  return `this host cannot reach ${origin}: check upstream.issuer (UPSTREAM_ISSUER), DNS, firewalls and egress proxies between the gateway and the upstream, and that the upstream is up`
}

/** Finds the upstream's metadata as the gateway does; undefined when the gateway could not either. */
export async function checkUpstreamDiscovery(report: Report, http: Requester, upstream: Settings['upstream']): Promise<UpstreamView | undefined> {
  const name = 'upstream discovery'
  if (upstream.endpoints) {
    report.skip(name, 'upstream.endpoints names the endpoints, so the gateway does not discover them')
    return {
      authorizationEndpoint: upstream.endpoints.authorization_endpoint,
      tokenEndpoint: upstream.endpoints.token_endpoint,
      revocationEndpoint: upstream.endpoints.revocation_endpoint,
      registrationEndpoint: upstream.endpoints.registration_endpoint,
    }
  }
  const tried: string[] = []
  for (const url of discoveryUrls(upstream.issuer)) {
    const answer = await http.request(url, { headers: { accept: 'application/json' } })
    if (!answer.ok) {
      report.fail(name, `upstream unreachable: ${answer.problem} (${url})`, unreachableFix(new URL(url).origin))
      return undefined
    }
    const metadata = answer.status === 200 ? jsonObject(answer) : undefined
    const authorization = urlIn(metadata, 'authorization_endpoint')
    const token = urlIn(metadata, 'token_endpoint')
    if (!metadata || !authorization || !token) {
      tried.push(`${url} answers ${metadata ? 'metadata without a valid authorization_endpoint and token_endpoint' : describeAnswer(answer)}`)
      continue
    }
    const issuer = metadata.issuer
    const view: UpstreamView = {
      authorizationEndpoint: authorization,
      tokenEndpoint: token,
      revocationEndpoint: urlIn(metadata, 'revocation_endpoint'),
      registrationEndpoint: urlIn(metadata, 'registration_endpoint'),
      metadata,
    }
    // RFC 8414 §3.3: the gateway refuses metadata whose issuer is not the one it asked for.
    if (typeof issuer !== 'string' || withoutTrailingSlash(issuer) !== withoutTrailingSlash(upstream.issuer)) {
      report.fail(name, `${url} names the issuer ${JSON.stringify(issuer)}, not ${upstream.issuer}`, `set upstream.issuer (UPSTREAM_ISSUER) to the upstream's issuer exactly: ${String(issuer)}`)
    } else {
      report.pass(name, `${url} (issuer ${issuer})`)
    }
    return view
  }
  report.fail(name, `no metadata: ${tried.join('; ')}`, 'set upstream.issuer (UPSTREAM_ISSUER) to the upstream\'s issuer exactly, or, for an upstream without discovery, name its endpoints in upstream.endpoints')
  return undefined
}

/** The gateway always sends code_challenge_method=S256 upstream. */
export function checkUpstreamPkce(report: Report, view: UpstreamView) {
  const name = 'upstream PKCE S256'
  if (!view.metadata) return report.skip(name, 'no metadata to read (upstream.endpoints); the connector flow below sends S256')
  const methods = view.metadata.code_challenge_methods_supported
  if (!Array.isArray(methods)) {
    return report.warn(name, 'the metadata lists no code_challenge_methods_supported', 'confirm that the upstream accepts code_challenge_method=S256: the gateway always sends it')
  }
  if (!methods.includes('S256')) {
    return report.fail(name, `code_challenge_methods_supported is ${JSON.stringify(methods)}`, 'upstream must support S256: the gateway always sends code_challenge_method=S256 (OAuth 2.1); switch PKCE S256 on for the gateway\'s client at the upstream')
  }
  report.pass(name, 'code_challenge_methods_supported includes S256')
}

/**
 * Each endpoint the gateway calls answers: any status below 500 but 404
 * counts, since without parameters or credentials an OAuth endpoint answers
 * an error (an empty POST cannot register or revoke anything).
 */
export async function checkUpstreamEndpoints(report: Report, http: Requester, view: UpstreamView, registrationMode: Settings['registration']['mode']) {
  const empty = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }
  await checkEndpoint(report, http, 'upstream authorization endpoint', view.authorizationEndpoint, { method: 'GET' })
  await checkEndpoint(report, http, 'upstream token endpoint', view.tokenEndpoint, empty)
  if (view.revocationEndpoint) await checkEndpoint(report, http, 'upstream revocation endpoint', view.revocationEndpoint, empty)
  if (registrationMode !== 'upstream') return
  const name = 'upstream registration endpoint'
  if (!view.registrationEndpoint) {
    return report.fail(name, 'registration.mode is upstream, but the upstream names no registration_endpoint', 'name it in upstream.endpoints.registration_endpoint, or set registration.mode to local')
  }
  await checkEndpoint(report, http, name, view.registrationEndpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' })
}

async function checkEndpoint(report: Report, http: Requester, name: string, url: string, init: RequestInit) {
  const answer = await http.request(url, init)
  if (!answer.ok) return report.fail(name, `${answer.problem} (${url})`, unreachableFix(new URL(url).origin))
  const what = `${init.method} ${url} answers ${describeAnswer(answer)}`
  if (answer.status === 404) return report.fail(name, what, 'no such endpoint: correct the upstream\'s metadata (its configured base URL) or upstream.endpoints')
  if (answer.status >= 500) return report.fail(name, what, 'the upstream fails at this endpoint: look at the upstream\'s logs, or at the proxy in front of it')
  report.pass(name, what)
}

/**
 * Where the user of each grant will come from (docs/connections.md), and
 * whether ending a grant can revoke its upstream refresh token (RFC 7009).
 */
export function checkGrantIdentity(report: Report, view: UpstreamView, upstream: Settings['upstream']) {
  const name = 'grant identity source'
  if (!view.metadata && upstream.identitySource === 'auto') {
    report.skip(name, 'no metadata to read (upstream.endpoints): at each sign-in, the ID token when the upstream sends one, else userinfo when upstream.endpoints names userinfo_endpoint')
  }
  const metadata = view.metadata ?? { userinfo_endpoint: upstream.endpoints?.userinfo_endpoint, introspection_endpoint: upstream.endpoints?.introspection_endpoint }
  if (!view.metadata && upstream.identitySource === 'auto') return checkGrantRevocation(report, view)
  const source = identitySourceFor(upstream.identitySource, metadata)
  const claim = `claim ${upstream.userClaim}`
  if (source === 'id_token') report.pass(name, `the ID token's ${claim} (the upstream is OpenID${metadata.userinfo_endpoint ? '; name and email from userinfo when the ID token lacks them' : ''})`)
  else if (source === 'userinfo') report.pass(name, `userinfo at ${String(metadata.userinfo_endpoint)}, ${claim}`)
  else if (source === 'introspection') report.pass(name, `token introspection at ${String(metadata.introspection_endpoint)}, ${claim}`)
  else if (upstream.identitySource === 'none') report.pass(name, 'none (upstream.identitySource: none): grants carry no user')
  else {
    report.warn(name, `none: upstream.identitySource is ${upstream.identitySource}, but the upstream's metadata offers no ${upstream.identitySource === 'auto' ? 'ID token or userinfo endpoint' : upstream.identitySource}`, 'grants will carry no user (ops can still revoke them by client, users cannot see theirs): set upstream.identitySource to a source the upstream has, or ask for its userinfo or introspection endpoint')
  }
  checkGrantRevocation(report, view)
}

function checkGrantRevocation(report: Report, view: UpstreamView) {
  const revocation = 'grant upstream revocation'
  if (view.revocationEndpoint) report.pass(revocation, `ending a grant revokes its upstream refresh token at ${view.revocationEndpoint}`)
  else report.warn(revocation, 'the upstream names no revocation_endpoint', 'ending a grant stops it at the gateway, but its upstream refresh token stays valid at the upstream until it expires; name the endpoint in upstream.endpoints.revocation_endpoint if the upstream has one')
}
