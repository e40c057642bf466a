/**
 * The connected-apps page's sign-in and session. The page signs the user in
 * through the upstream as the gateway's own client, so it is an OAuth client
 * itself and keeps the client's duties (RFC 6749 §10.12, RFC 9700 §4.7.1):
 * its `state` is single-use and bound to the browser that started the
 * sign-in, and PKCE protects its code.
 *
 * What the browser carries is sealed with GATEWAY_SECRET, each under its own
 * purpose, so one never opens as another:
 * - the sign-in transaction, in the upstream `state` (`sign-in`): its id, the
 *   PKCE verifier, and a hash of the random value in the sign-in cookie, which
 *   only the browser that started it holds;
 * - the session, in the session cookie (`session`): who signed in, for
 *   `connections.sessionMinutes`;
 * - a CSRF token per form (`session-csrf`), bound to the session and to the
 *   form's action, used once.
 *
 * Both cookies are HttpOnly and SameSite=Lax, `__Host-` and Secure on https
 * (cookies.ts): `__Host-gateway-session` and `__Host-gateway-sign-in`.
 *
 * Pure: no Fastify here; the routes pass header values in and out.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Config } from '../config/schema.ts'
import { nowSeconds, type Sealer } from '../state/seal.ts'
import { cookieName, cookieValues, secureCookies, setCookieHeader } from './cookies.ts'
import { newVerifier } from './pkce.ts'

/** A page sign-in on its way through the upstream, sealed into `state`. */
export interface PageSignIn {
  /** Single-use id. */
  j: string
  /** The gateway's PKCE verifier towards the upstream. */
  v: string
  /** browserHash() of the sign-in cookie's value. */
  b: string
  /** Marks the transaction as the page's, for the callback (the clients' transactions have none). */
  k: 'connections'
}

/** Who is signed in on the page, as the upstream told. */
export interface SessionUser {
  /** The user's stable id at the upstream (the grants' `user`). */
  id: string
  name?: string | undefined
  email?: string | undefined
}

/** The page's session, sealed into the session cookie. */
export interface UserSession {
  /** Random session id: CSRF tokens are bound to it, and sign-out ends it. */
  sid: string
  user: SessionUser
  /** When it ends, epoch seconds (the seal's own expiry). */
  exp: number
}

/** What a form on the page does; its CSRF token is good for that action only. */
export type SessionAction = 'disconnect' | 'sign-out'

interface CsrfToken {
  /** Single-use id. */
  j: string
  s: string
  a: SessionAction
}

function browserHash(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}

export class UserSessions {
  /** `__Host-gateway-session`, or `gateway-session` on loopback http. */
  readonly cookieName: string
  /** `__Host-gateway-sign-in`, or `gateway-sign-in` on loopback http: the browser half of a sign-in under way. */
  readonly signInCookieName: string
  /** How long a session lasts, in seconds. */
  readonly sessionSeconds: number
  readonly #secure: boolean
  readonly #sealer: Sealer
  readonly #signInSeconds: number

  constructor(sealer: Sealer, config: Config) {
    this.#sealer = sealer
    this.#secure = secureCookies(config.publicUrl)
    this.cookieName = cookieName('gateway-session', this.#secure)
    this.signInCookieName = cookieName('gateway-sign-in', this.#secure)
    this.sessionSeconds = config.connections.sessionMinutes * 60
    this.#signInSeconds = config.lifetimes.transactionSeconds
  }

  /**
   * A new sign-in: the transaction, its sealed `state`, and the Set-Cookie of
   * the sign-in cookie that binds it to this browser.
   */
  startSignIn(): { signIn: PageSignIn; state: string; setCookie: string } {
    const browserValue = randomBytes(18).toString('base64url')
    const signIn: PageSignIn = { j: randomUUID(), v: newVerifier(), b: browserHash(browserValue), k: 'connections' }
    return {
      signIn,
      state: this.#sealer.seal('sign-in', signIn, this.#signInSeconds),
      setCookie: setCookieHeader(this.signInCookieName, browserValue, this.#signInSeconds, this.#secure),
    }
  }

  /** The page sign-in sealed in a callback's `state`, when it is one (and genuine, and not expired). */
  openSignIn(state: unknown): PageSignIn | undefined {
    const signIn = this.#sealer.open<PageSignIn>('sign-in', state)
    return signIn?.k === 'connections' && typeof signIn.j === 'string' && typeof signIn.v === 'string' ? signIn : undefined
  }

  /** Whether this browser started the sign-in: its sign-in cookie matches the transaction (login CSRF, RFC 6749 §10.12). */
  startedHere(signIn: PageSignIn, cookieHeader: string | undefined): boolean {
    return cookieValues(cookieHeader, this.signInCookieName).some((value) => browserHash(value) === signIn.b)
  }

  /** A new session for the user the upstream named, and the Set-Cookie headers: the session cookie, and the spent sign-in cookie removed. */
  startSession(user: SessionUser): { session: UserSession; setCookies: string[] } {
    const sid = randomBytes(18).toString('base64url')
    const exp = nowSeconds() + this.sessionSeconds
    const session: UserSession = { sid, user: withoutEmpty(user), exp }
    const value = this.#sealer.seal('session', { sid, user: session.user }, this.sessionSeconds)
    return {
      session,
      setCookies: [setCookieHeader(this.cookieName, value, this.sessionSeconds, this.#secure), this.#removal(this.signInCookieName)],
    }
  }

  /** The session in a Cookie header, when one opens: a forged, foreign or expired one does not. (Whether it was signed out is the store's.) */
  readSession(cookieHeader: string | undefined): UserSession | undefined {
    for (const value of cookieValues(cookieHeader, this.cookieName)) {
      const opened = this.#sealer.open<{ sid?: unknown; user?: { id?: unknown; name?: unknown; email?: unknown }; exp?: unknown }>('session', value)
      if (!opened || typeof opened.sid !== 'string' || typeof opened.user?.id !== 'string' || typeof opened.exp !== 'number') continue
      const { id, name, email } = opened.user
      const user: SessionUser = { id, name: typeof name === 'string' ? name : undefined, email: typeof email === 'string' ? email : undefined }
      return { sid: opened.sid, user, exp: opened.exp }
    }
    return undefined
  }

  /** The Set-Cookie that ends the session in this browser. */
  endSessionCookie(): string {
    return this.#removal(this.cookieName)
  }

  /** Seconds the session has left (at least 1), for what must not outlive it. */
  secondsLeft(session: UserSession): number {
    return Math.max(1, session.exp - nowSeconds())
  }

  /** A CSRF token for one form of one session: good for `action` only, until the session ends. */
  csrfToken(session: UserSession, action: SessionAction): string {
    const token: CsrfToken = { j: randomUUID(), s: session.sid, a: action }
    return this.#sealer.seal('session-csrf', token, this.secondsLeft(session))
  }

  /** The token's single-use id when it was made for this session and this action; single use is the caller's, in the store. */
  csrfMatches(token: unknown, session: UserSession, action: SessionAction): string | undefined {
    const opened = this.#sealer.open<CsrfToken>('session-csrf', token)
    return opened && typeof opened.j === 'string' && opened.s === session.sid && opened.a === action ? opened.j : undefined
  }

  #removal(name: string): string {
    return setCookieHeader(name, '', 0, this.#secure)
  }
}

function withoutEmpty(user: SessionUser): SessionUser {
  return {
    id: user.id,
    ...(user.name ? { name: user.name } : {}),
    ...(user.email ? { email: user.email } : {}),
  }
}
