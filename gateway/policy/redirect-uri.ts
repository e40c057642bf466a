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

/** One path segment of a pattern: literal, or a wildcard for the rest of the segment after a literal prefix ('' = the whole segment). */
export type SegmentPattern = { literal: string } | { prefix: string }

/** One allowlist entry: an exact URI, or a pattern with wildcard segments, an optional `:*` port and, on loopback, `/**`. */
export interface RedirectPattern {
  source: string
  protocol: string
  hostname: string
  /** `*` for any port; otherwise the port as URL serialises it ('' for the default). */
  port: string
  /** The path's segments after the leading `/`. */
  segments: SegmentPattern[]
  /** A trailing `/**`: any path below, in whole segments (loopback only). */
  anyPathBelow: boolean
  search: string
}

const ANY = '__any__'
const ANY_PORT = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*):\*(?=[/?]|$)/
const ANY_PATH_BELOW = /\/\*\*$/

/** Replaces each wildcard segment (`*`, or `prefix*`) with a placeholder that survives normalisation. */
function markWildcardSegments(source: string, path: string): string {
  return path
    .split('/')
    .map((segment) => {
      if (!segment.includes('*')) return segment
      if (!/^[^*]*\*$/.test(segment)) throw new Error(`"${source}": "*" may only stand for a whole path segment, the rest of one after a literal prefix, or the port`)
      return segment.slice(0, -1) + ANY
    })
    .join('/')
}

/**
 * Parses an allowlist entry. A wildcard never crosses a `/` and never applies
 * to a host, so `chatgpt.com.evil.com` can never match `chatgpt.com`:
 * `*` is one whole, non-empty path segment; `g-*` is one segment that starts
 * with `g-` and goes on; `:*` after the host is any port; a trailing `/**`
 * (loopback http only, RFC 8252 §7.3) is any path below, in whole segments.
 */
export function parsePattern(source: string): RedirectPattern {
  if (source.includes(ANY)) throw new Error(`"${source}" must not contain ${ANY}`)
  const anyPort = ANY_PORT.test(source)
  let rest = source.replace(ANY_PORT, '$1')
  const anyPathBelow = ANY_PATH_BELOW.test(rest)
  if (anyPathBelow) rest = rest.replace(ANY_PATH_BELOW, '/')
  const split = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*)([^?#]*)(.*)$/.exec(rest)
  if (!split) throw new Error(`"${source}" must be an absolute URI with an authority (scheme://host/path)`)
  const [, origin = '', path = '', tail = ''] = split
  if (/\*/.test(origin) || /\*/.test(tail)) throw new Error(`"${source}": "*" may only stand for a whole path segment, the rest of one after a literal prefix, or the port`)
  const checked = normaliseRedirectUri(origin + markWildcardSegments(source, path) + tail)
  if (!checked.ok) throw new Error(`"${source}" ${checked.reason}`)
  const { url } = checked
  if (anyPathBelow && !isLoopbackHttp(url)) throw new Error(`"${source}": "/**" is only allowed on loopback http patterns (RFC 8252 §7.3)`)
  const segments = url.pathname
    .split('/')
    .slice(1)
    .map((segment): SegmentPattern => (segment.endsWith(ANY) ? { prefix: segment.slice(0, -ANY.length) } : { literal: segment }))
  return {
    source,
    protocol: url.protocol,
    hostname: url.hostname.toLowerCase(),
    port: anyPort ? '*' : url.port,
    // '/**' was parsed as the path '/', whose one empty segment is not part of the prefix.
    segments: anyPathBelow ? segments.slice(0, -1) : segments,
    anyPathBelow,
    search: url.search,
  }
}

function portMatches(pattern: RedirectPattern, url: URL) {
  // RFC 8252 §7.3: the port of a loopback redirect URI is chosen at run time; any port is allowed.
  return pattern.port === '*' || isLoopbackHttp(url) || pattern.port === url.port
}

function segmentMatches(pattern: SegmentPattern, segment: string) {
  if ('literal' in pattern) return pattern.literal === segment
  return segment.length > pattern.prefix.length && segment.startsWith(pattern.prefix)
}

/** Below a `/**`: at least one segment, none of them empty except a trailing slash's. */
function isPathBelow(rest: string[]) {
  return rest.length > 0 && rest.slice(0, -1).every((segment) => segment !== '')
}

export function matchesPattern(pattern: RedirectPattern, url: URL): boolean {
  if (pattern.protocol !== url.protocol || pattern.hostname !== url.hostname.toLowerCase()) return false
  if (!portMatches(pattern, url) || pattern.search !== url.search) return false
  const segments = url.pathname.split('/').slice(1)
  const fixed = pattern.segments.length
  if (pattern.anyPathBelow ? segments.length <= fixed || !isPathBelow(segments.slice(fixed)) : segments.length !== fixed) return false
  return pattern.segments.every((expected, i) => segmentMatches(expected, segments[i]!))
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
