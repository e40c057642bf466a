/**
 * Consent policy. The gateway reaches NeonPanel as one client, so without a
 * question of its own any client registered here could ride a user's NeonPanel
 * session and receive a code silently (the confused deputy; MCP authorization,
 * "Security Best Practices"). Before sending a browser upstream for a client
 * this browser has not approved, the gateway asks.
 *
 * What the browser carries is sealed with GATEWAY_SECRET:
 * - the pending authorization, in the consent form (expires with the transaction);
 * - a CSRF token, in the same form, bound to that pending authorization and to
 *   this browser, used once;
 * - the consent cookie: this browser's random id and its approvals, each bound
 *   to one client id and one redirect URI and holding the scopes approved for
 *   them, HttpOnly and SameSite=Lax, so a cross-site form post carries neither
 *   the cookie nor a matching token.
 *
 * A remembered approval skips the page when it covers every scope asked for,
 * except when the client sends `prompt=consent` (OpenID Connect Core
 * §3.1.2.1): then the user is asked again. A client that steps up (MCP
 * authorization, "Scope Challenge Handling": it asks again with the union of
 * its scopes) is asked for the new scopes only, and approving adds them.
 *
 * Pure: no Fastify here; the routes pass header values in and out.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Config } from '../config/schema.ts'
import { cookieName, cookieValues, secureCookies, setCookieHeader } from './cookies.ts'
import { RedirectAllowlist } from './redirect-uri.ts'
import { canonicalScope, scopeNames } from './scopes.ts'
import type { Sealer } from '../state/seal.ts'

/** What /authorize validated, sealed into the consent form until the user decides. */
export interface PendingAuthorization {
  /** Single-use id; the CSRF token is bound to it. */
  j: string
  /** clientHandle() of the client, and approvalKey() of client and redirect URI. */
  c: string
  a: string
  /** The client's redirect URI, state and PKCE challenge (S256). */
  r: string
  s?: string | undefined
  cc: string
  /** The scope the client asked for, in its own names (shown on the page), and the RFC 8707 resource it named. */
  sc: string
  /** The scope asked of the upstream (renamed per scopes.upstream, offline_access added when configured). */
  us?: string | undefined
  res?: string | undefined
  /** Registration passthrough: the client's own upstream client id, which the upstream authorization names. */
  u?: string | undefined
  /** The flow, for the log (log.ts). */
  f?: string | undefined
}

/**
 * The consent cookie: this browser's id and its approvals as [approvalKey,
 * expiry in epoch seconds, approved scopes, clientHandle() of the client], the
 * client named so that disconnecting it on the connected-apps page forgets its
 * approvals. Entries of cookies set before scopes were kept have no third
 * member: they approve nothing.
 */
export interface ConsentCookie {
  b: string
  a: Approval[]
}

export type Approval = [key: string, expires: number, scopes?: string, client?: string]

/** A cookie holds at most this many approvals, the newest; older ones are asked again. */
const MAX_APPROVALS = 20
const DAY = 24 * 60 * 60

/**
 * Binds an approval to one client id and one exact redirect URI, without
 * carrying the (long) client id; the approval holds the scopes approved.
 */
export function approvalKey(clientId: string, redirectUri: string): string {
  return createHash('sha256').update(`${clientId}\n${redirectUri}\napproval`).digest('base64url').slice(0, 22)
}

function browserHash(browserId: string): string {
  return createHash('sha256').update(browserId).digest('base64url').slice(0, 22)
}

export class ConsentPolicy {
  /** `__Host-gateway-consent`, or `gateway-consent` on loopback http (cookies.ts). */
  readonly cookieName: string
  readonly #secure: boolean
  readonly #sealer: Sealer
  readonly #rememberSeconds: number
  readonly #cookieSeconds: number
  readonly #transactionSeconds: number
  readonly #trustedRedirects: RedirectAllowlist
  readonly #trustedClients: ReadonlySet<string>

  constructor(sealer: Sealer, config: Config) {
    this.#sealer = sealer
    this.#secure = secureCookies(config.publicUrl)
    this.cookieName = cookieName('gateway-consent', this.#secure)
    this.#rememberSeconds = config.consent.rememberDays * DAY
    this.#transactionSeconds = config.lifetimes.transactionSeconds
    this.#cookieSeconds = Math.max(this.#rememberSeconds, this.#transactionSeconds)
    this.#trustedRedirects = new RedirectAllowlist(config.consent.trustedRedirectUris)
    this.#trustedClients = new Set(config.consent.trustedClientIds)
  }

  /** Ops trust this client, or every client sending users to this redirect URI: no page. */
  isTrusted(clientId: string, redirectUri: URL): boolean {
    return this.#trustedClients.has(clientId) || this.#trustedRedirects.allows(redirectUri)
  }

  /** The consent cookie from a Cookie header, when one opens (a forged or foreign one does not). */
  readCookie(cookieHeader: string | undefined): ConsentCookie | undefined {
    for (const value of cookieValues(cookieHeader, this.cookieName)) {
      const cookie = this.#sealer.open<ConsentCookie & { exp?: number }>('consent', value)
      if (cookie && typeof cookie.b === 'string' && Array.isArray(cookie.a)) return { b: cookie.b, a: cookie.a }
    }
    return undefined
  }

  /** A cookie for a browser that has none (or a broken one): a new id, no approvals. */
  newCookie(): ConsentCookie {
    return { b: randomBytes(18).toString('base64url'), a: [] }
  }

  /** The scopes this browser approved for the client and redirect URI, while the approval lasts. */
  approvedScopes(cookie: ConsentCookie | undefined, key: string): string[] {
    const now = Math.floor(Date.now() / 1000)
    const entry = cookie?.a.find(([approved, expires]) => approved === key && expires > now)
    return scopeNames(entry?.[2])
  }

  /** Whether every scope asked for was approved. */
  hasApproval(cookie: ConsentCookie | undefined, key: string, scope: string): boolean {
    const approved = this.approvedScopes(cookie, key)
    return approved.length > 0 && scopeNames(scope).every((name) => approved.includes(name))
  }

  /** The cookie with these scopes of `client` (its clientHandle()) added to the approval (or renewing it); unchanged when approvals are not remembered. */
  withApproval(cookie: ConsentCookie, key: string, scope: string, client: string): ConsentCookie {
    if (this.#rememberSeconds === 0) return cookie
    const now = Math.floor(Date.now() / 1000)
    const union = canonicalScope(`${this.approvedScopes(cookie, key).join(' ')} ${scope}`)
    const kept = cookie.a.filter(([approved, expires]) => approved !== key && expires > now)
    return { b: cookie.b, a: [...kept, [key, now + this.#rememberSeconds, union, client] as Approval].slice(-MAX_APPROVALS) }
  }

  /**
   * The cookie without any approval of `client` (its clientHandle()), so that
   * connecting it again asks the user again; other clients' approvals stay.
   * Approvals that name no client (remembered by an older version) may be this
   * client's, so they go too: at worst another app is asked once more.
   */
  withoutClient(cookie: ConsentCookie, client: string): ConsentCookie {
    return { b: cookie.b, a: cookie.a.filter(([, , , approved]) => approved !== undefined && approved !== client) }
  }

  /** The Set-Cookie header value. */
  setCookie(cookie: ConsentCookie): string {
    return setCookieHeader(this.cookieName, this.#sealer.seal('consent', cookie, this.#cookieSeconds), this.#cookieSeconds, this.#secure)
  }

  sealPending(pending: PendingAuthorization): string {
    return this.#sealer.seal('pending', pending, this.#transactionSeconds)
  }

  openPending(value: unknown): PendingAuthorization | undefined {
    const pending = this.#sealer.open<PendingAuthorization>('pending', value)
    return pending && typeof pending.j === 'string' && typeof pending.r === 'string' ? pending : undefined
  }

  /** A CSRF token for one pending authorization in one browser. */
  csrfToken(pending: PendingAuthorization, cookie: ConsentCookie): string {
    return this.#sealer.seal('csrf', { j: pending.j, b: browserHash(cookie.b) }, this.#transactionSeconds)
  }

  /** Whether the token was made for this pending authorization and this browser (single use is the caller's, in the store). */
  csrfMatches(token: unknown, pending: PendingAuthorization, cookie: ConsentCookie | undefined): boolean {
    const opened = this.#sealer.open<{ j: string; b: string }>('csrf', token)
    return !!opened && !!cookie && opened.j === pending.j && opened.b === browserHash(cookie.b)
  }
}
