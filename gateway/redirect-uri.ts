/**
 * Redirect URI policy: normalisation, the ops allowlist's patterns, and the
 * comparison between a registered and a requested URI. Pure: no Fastify here.
 */

export type Normalised = { ok: true; uri: string; url: URL } | { ok: false; reason: string }

/** Schemes that can never be a redirect target, whatever the allowlist says. */
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'vbscript:', 'about:', 'blob:', 'filesystem:', 'ws:', 'wss:', 'ftp:'])
const MAX_LENGTH = 2048

/** Loopback hosts of RFC 8252 §7.3, plus `localhost`, which real clients (Claude Code, Inspector) use. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase()
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host)
}

function isLoopbackHttp(url: URL) {
  return url.protocol === 'http:' && isLoopbackHost(url.hostname)
}

/**
 * Checks a redirect URI as a client sent it and returns its normal form:
 * lower-case scheme and host, no default port. Anything that could make two
 * parsers disagree (userinfo, dot segments, encoded slashes or dots,
 * backslashes, fragments, control characters) is refused rather than cleaned.
 */
export function normaliseRedirectUri(raw: unknown): Normalised {
  if (typeof raw !== 'string' || raw.length === 0) return { ok: false, reason: 'must be a non-empty string' }
  if (raw.length > MAX_LENGTH) return { ok: false, reason: `must be at most ${MAX_LENGTH} characters` }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f-\uffff\\]/.test(raw)) return { ok: false, reason: 'must not contain spaces, control characters, non-ASCII or backslashes' }
  if (raw.includes('#')) return { ok: false, reason: 'must not have a fragment (RFC 6749 §3.1.2)' }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^?#]*)/.exec(raw)
  if (!scheme) return { ok: false, reason: 'must be an absolute URI with an authority (scheme://host/path)' }
  const [, , authority = '', path = ''] = scheme
  if (authority.includes('@')) return { ok: false, reason: 'must not contain userinfo' }
  if (/%(2f|5c|2e|00)/i.test(path)) return { ok: false, reason: 'must not contain encoded slashes, dots or NUL in its path' }
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) {
    return { ok: false, reason: 'must not contain dot segments' }
  }
  if (!URL.canParse(raw)) return { ok: false, reason: 'is not a valid URL' }
  const url = new URL(raw)
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return { ok: false, reason: `must not use the ${url.protocol} scheme` }
  if (!url.hostname) return { ok: false, reason: 'must name a host' }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return { ok: false, reason: 'must be https (plain http only for loopback hosts, RFC 8252 §7.3)' }
  }
  return { ok: true, uri: url.href, url }
}

/** One allowlist entry: an exact URI, or a pattern with `*` segments and an optional `:*` port. */
export interface RedirectPattern {
  source: string
  protocol: string
  hostname: string
  /** `*` for any port; otherwise the port as URL serialises it ('' for the default). */
  port: string
  /** Path segments; `*` matches exactly one whole, non-empty segment. */
  segments: string[]
  search: string
}

/**
 * Parses an allowlist entry. Wildcards only ever stand for a whole path
 * segment or the port: never part of a host, so `chatgpt.com.evil.com` can
 * never match `chatgpt.com`.
 */
export function parsePattern(source: string): RedirectPattern {
  const anyPort = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*:\*(?=[/?]|$)/.test(source)
  const concrete = source.replace(/^([^:]+:\/\/[^/?#]*):\*(?=[/?]|$)/, '$1').replace(/\/\*(?=\/|\?|$)/g, '/wildcard-segment')
  if (/\*/.test(concrete)) throw new Error(`"${source}": "*" may only stand for a whole path segment or the port`)
  const checked = normaliseRedirectUri(concrete)
  if (!checked.ok) throw new Error(`"${source}" ${checked.reason}`)
  const { url } = checked
  return {
    source,
    protocol: url.protocol,
    hostname: url.hostname.toLowerCase(),
    port: anyPort ? '*' : url.port,
    segments: url.pathname.split('/').map((segment) => (segment === 'wildcard-segment' ? '*' : segment)),
    search: url.search,
  }
}

function portMatches(pattern: RedirectPattern, url: URL) {
  // RFC 8252 §7.3: the port of a loopback redirect URI is chosen at run time; any port is allowed.
  return pattern.port === '*' || isLoopbackHttp(url) || pattern.port === url.port
}

export function matchesPattern(pattern: RedirectPattern, url: URL): boolean {
  if (pattern.protocol !== url.protocol || pattern.hostname !== url.hostname.toLowerCase()) return false
  if (!portMatches(pattern, url) || pattern.search !== url.search) return false
  const segments = url.pathname.split('/')
  if (segments.length !== pattern.segments.length) return false
  return pattern.segments.every((expected, i) => (expected === '*' ? segments[i] !== '' : expected === segments[i]))
}

/** The compiled allowlist. */
export class RedirectAllowlist {
  readonly patterns: readonly RedirectPattern[]

  constructor(sources: readonly string[]) {
    this.patterns = sources.map(parsePattern)
  }

  allows(url: URL): boolean {
    return this.patterns.some((pattern) => matchesPattern(pattern, url))
  }
}

/**
 * Whether a requested redirect URI is one the client registered: exact after
 * normalisation, except that a loopback URI may differ in port (RFC 8252 §7.3).
 */
export function sameRedirectUri(registered: string, requested: URL): boolean {
  if (registered === requested.href) return true
  if (!isLoopbackHttp(requested)) return false
  const url = new URL(registered)
  return (
    isLoopbackHttp(url) &&
    url.hostname === requested.hostname &&
    url.pathname === requested.pathname &&
    url.search === requested.search
  )
}
