/**
 * The gateway's browser cookies, read and written alike: the consent cookie
 * (consent.ts) and the connected-apps page's sign-in and session cookies
 * (user-session.ts).
 *
 * `__Host-` pins a cookie to this host, https and Path=/ (RFC 6265bis
 * §4.1.3.2). Browsers refuse Secure cookies from plain-http pages, so on an
 * http public URL (loopback development and tests only, config/schema.ts
 * allows nothing else) a cookie goes without Secure and without the prefix.
 *
 * Pure: no Fastify here; the routes pass header values in and out.
 */

/** Whether the gateway's cookies are Secure and `__Host-` prefixed: its public URL is https. */
export function secureCookies(publicUrl: string): boolean {
  return new URL(publicUrl).protocol === 'https:'
}

/** `__Host-<name>` on https, `<name>` on loopback http. */
export function cookieName(name: string, secure: boolean): string {
  return secure ? `__Host-${name}` : name
}

/** A Set-Cookie value: HttpOnly, SameSite=Lax, Path=/, Secure on https; Max-Age 0 deletes it. */
export function setCookieHeader(name: string, value: string, maxAgeSeconds: number, secure: boolean): string {
  const attributes = [`${name}=${value}`, 'Path=/', `Max-Age=${maxAgeSeconds}`, 'HttpOnly', 'SameSite=Lax']
  if (secure) attributes.push('Secure')
  return attributes.join('; ')
}

/** Every value of the named cookie in a Cookie header (RFC 6265 §5.4); a browser may send two of the same name. */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return []
  return header
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair.startsWith(`${name}=`))
    .map((pair) => pair.slice(name.length + 1))
}
