/**
 * HTML pages shown in the browser, all from one template (views/page.html).
 * Everything interpolated is escaped; the only inline style is allowed by its
 * hash, so the Content-Security-Policy forbids everything else.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { PATHS } from '../context.ts'
import type { ApplicationType } from '../policy/application-type.ts'

const template = readFileSync(new URL('./views/page.html', import.meta.url), 'utf8')
const style = /<style>([\s\S]*?)<\/style>/.exec(template)?.[1] ?? ''
const styleHash = createHash('sha256').update(style).digest('base64')

/**
 * Headers every page carries (RFC 9700 §4.16: no framing). `formActions` are
 * the origins a form on the page may end up at: browsers apply form-action to
 * the redirects that follow a form post too, so the consent page names where
 * its answer sends the browser (the upstream, the client).
 */
export function pageHeaders(formActions: readonly string[] = []) {
  const formAction = ["'self'", ...new Set(formActions)].join(' ')
  return Object.freeze({
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': `default-src 'none'; style-src 'sha256-${styleHash}'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    // Not no-referrer: with it, browsers send `Origin: null` on the page's own form post,
    // and /consent checks Origin. same-origin still sends nothing to other sites.
    'referrer-policy': 'same-origin',
    'cache-control': 'no-store',
  })
}

export const PAGE_HEADERS = pageHeaders()

/** A CSP source for where a URL leads: its origin, or its scheme for an app's own scheme (cursor://). */
export function cspSource(url: URL): string {
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol
}

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
}

/** Renders the template; `body` must already be safe HTML. */
export function renderPage(title: string, body: string): string {
  return template.replaceAll('{{title}}', escapeHtml(title)).replace('{{body}}', () => body)
}

/** On the consent and error pages: where a user sees and ends what they connected. */
const MANAGE_LINK = `<p class="manage"><a href="${PATHS.connections}">Manage connected apps</a></p>`

/** The page for an error that cannot be sent back to the client. */
export function renderErrorPage(error: string, description: string, hint: string): string {
  return renderPage(
    'Sign-in could not continue',
    [
      `<p>${escapeHtml(description)}</p>`,
      `<p class="hint">${escapeHtml(hint)}</p>`,
      `<p class="hint">Error code: <code>${escapeHtml(error)}</code></p>`,
      MANAGE_LINK,
    ].join('\n'),
  )
}

/** What each scope lets the app do, in the user's words. Unknown scopes are shown as they are. */
const SCOPE_WORDS: Record<string, string> = {
  openid: 'Confirm who you are on NeonPanel',
  profile: 'See your name',
  email: 'See your email address',
  offline_access: 'Stay connected while you are away, until you disconnect it',
}

/** A scope as a list item: the words, then the scope's own name. */
function scopeItem(scope: string): string {
  return `<li>${escapeHtml(SCOPE_WORDS[scope] ?? 'A NeonPanel permission')} <code>${escapeHtml(scope)}</code></li>`
}

export interface ConsentView {
  /** The name the client gave; self-asserted unless it came from a metadata document. */
  clientName?: string | undefined
  /** For a metadata-document client: the host its document was fetched from and checked against (client_id equals the document's URL). */
  publisher?: string | undefined
  redirectUri: URL
  /** The client's application type as the gateway settled it (policy/application-type.ts); absent reads as the redirect URI shows. */
  applicationType?: ApplicationType | undefined
  /** The scopes asked for that this browser has not approved for the app. */
  scopes: string[]
  /** The scopes asked for that it already approved (a client stepping up asks for them again with new ones). */
  approvedBefore?: string[] | undefined
  action: string
  pending: string
  csrf: string
}

/**
 * How the destination reads to a person: a web host, or an app on this
 * computer or device. A native app may receive its answer at an https
 * address it claims (RFC 8252 §7.2): that is still an app, not a website.
 */
function describeDestination(url: URL, applicationType: ConsentView['applicationType']): { host: string; note: string } {
  if (url.protocol === 'https:') return { host: url.host, note: applicationType === 'native' ? 'an app on this device, through this web address' : 'a website' }
  if (url.protocol === 'http:') return { host: url.host, note: 'an app on this computer' }
  return { host: `${url.protocol}//${url.host}`, note: 'an app installed on this device' }
}

/** The consent page: who asks, where the browser goes afterwards (prominently), what for, and the two answers. */
export function renderConsentPage(view: ConsentView): string {
  const name = view.clientName?.trim() || 'An unnamed app'
  const destination = describeDestination(view.redirectUri, view.applicationType)
  const who = view.publisher
    ? `<p class="hint">Verified publisher: <strong>${escapeHtml(view.publisher)}</strong>. The gateway read this app's name and addresses from its client metadata document there, at the address that identifies the app.</p>`
    : '<p class="hint">The app chose this name itself; NeonPanel has not checked it.</p>'
  const scopes = view.scopes.map(scopeItem).join('\n')
  return renderPage(
    `Connect ${name} to your NeonPanel account?`,
    [
      who,
      '<section class="destination" aria-labelledby="destination-heading">',
      '<h2 id="destination-heading">After you approve, you will be sent to</h2>',
      `<p class="host" id="redirect-host">${escapeHtml(destination.host)}</p>`,
      `<p class="hint">${escapeHtml(destination.note)}: <code>${escapeHtml(view.redirectUri.href)}</code></p>`,
      '</section>',
      '<section aria-labelledby="scopes-heading">',
      `<h2 id="scopes-heading">${view.approvedBefore?.length ? 'The app asks for more: it will also be able to' : 'The app will be able to'}</h2>`,
      `<ul class="scopes">\n${scopes}\n</ul>`,
      ...(view.approvedBefore?.length
        ? [`<p class="hint" id="approved-before">You already allowed: ${view.approvedBefore.map((scope) => `<code>${escapeHtml(scope)}</code>`).join(' ')}</p>`]
        : []),
      '</section>',
      '<p>Approve only if you started connecting this app yourself and you expected to be sent to the address above.</p>',
      `<form method="post" action="${escapeHtml(view.action)}" aria-labelledby="decision-label">`,
      '<p id="decision-label" class="hint">Your answer applies to this app, this address and these permissions only.</p>',
      `<input type="hidden" name="pending" value="${escapeHtml(view.pending)}">`,
      `<input type="hidden" name="csrf" value="${escapeHtml(view.csrf)}">`,
      '<div class="actions">',
      '<button type="submit" name="decision" value="approve" class="primary">Approve</button>',
      '<button type="submit" name="decision" value="deny">Deny</button>',
      '</div>',
      '</form>',
      MANAGE_LINK,
    ].join('\n'),
  )
}

/** One connected app as the connected-apps page shows it. */
export interface ConnectionView {
  grantId: string
  /** Its Disconnect form's CSRF token. */
  csrf: string
  clientName?: string | undefined
  /** True when the app chose its name itself (a registered client); false for a metadata document's, published at `publisher`. */
  unverified: boolean
  publisher?: string | undefined
  redirectHost: string
  scopes: string[]
  /** Epoch seconds. */
  createdAt: number
  lastUsedAt: number
}

export interface ConnectionsView {
  user: { id: string; name?: string | undefined; email?: string | undefined }
  connections: ConnectionView[]
  /** Where the forms post, and the sign-out form's CSRF token (each app's own is in its view). */
  disconnectAction: string
  signOutAction: string
  signOutCsrf: string
  /** Shown at the top once, after a disconnect. */
  notice?: string | undefined
}

/** A moment as people read it, in UTC (the page cannot know the reader's zone without a script): "7 Dec 2026, 01:15 UTC". */
function describeTime(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000)
  const day = date.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' })
  const time = date.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' })
  return `<time datetime="${date.toISOString()}">${escapeHtml(`${day}, ${time} UTC`)}</time>`
}

function hiddenField(name: string, value: string): string {
  return `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`
}

/** One app: its name as the consent page marks it, where it sends the user, what it may do, since when, and its Disconnect button. */
function renderConnection(view: ConnectionsView, connection: ConnectionView, index: number): string {
  const name = connection.clientName?.trim() || 'An unnamed app'
  const heading = `app-${index}`
  const who = connection.unverified || !connection.publisher
    ? '<p class="hint"><span class="tag">Unverified name</span> The app chose this name itself; NeonPanel has not checked it.</p>'
    : `<p class="hint">This app describes itself at <strong>${escapeHtml(connection.publisher)}</strong>.</p>`
  const scopes = connection.scopes.length ? connection.scopes.map(scopeItem).join('\n') : '<li>Nothing beyond signing you in</li>'
  return [
    `<section class="app" aria-labelledby="${heading}">`,
    `<h2 id="${heading}">${escapeHtml(name)}</h2>`,
    who,
    '<dl>',
    `<dt>Sends you back to</dt><dd class="host">${escapeHtml(connection.redirectHost)}</dd>`,
    `<dt>Can</dt><dd><ul class="scopes">\n${scopes}\n</ul></dd>`,
    `<dt>Connected since</dt><dd>${describeTime(connection.createdAt)}</dd>`,
    `<dt>Last used</dt><dd>${describeTime(connection.lastUsedAt)}</dd>`,
    '</dl>',
    `<form method="post" action="${escapeHtml(view.disconnectAction)}">`,
    hiddenField('grant', connection.grantId),
    hiddenField('csrf', connection.csrf),
    `<button type="submit" aria-label="Disconnect ${escapeHtml(name)}">Disconnect</button>`,
    '</form>',
    '</section>',
  ].join('\n')
}

/** The user's own page: who is signed in, every app they connected, and the way out. */
export function renderConnectionsPage(view: ConnectionsView): string {
  const who = view.user.name ?? view.user.email ?? view.user.id
  const also = view.user.name && view.user.email ? ` (${escapeHtml(view.user.email)})` : ''
  const list = view.connections.length
    ? view.connections.map((connection, index) => renderConnection(view, connection, index + 1)).join('\n')
    : '<p id="no-apps">No apps are connected to your NeonPanel account through this sign-in service.</p>'
  return renderPage(
    'Your connected apps',
    [
      view.notice ? `<p class="notice" role="status">${escapeHtml(view.notice)}</p>` : '',
      `<p id="signed-in-as">Signed in as <strong>${escapeHtml(who)}</strong>${also}.</p>`,
      '<p class="hint">These apps can reach your NeonPanel account. Disconnect one you no longer use or do not recognise: it loses access at once, and connecting it again asks you first. The others stay connected.</p>',
      list,
      `<form method="post" action="${escapeHtml(view.signOutAction)}" class="sign-out">`,
      hiddenField('csrf', view.signOutCsrf),
      '<button type="submit">Sign out of this page</button>',
      '</form>',
    ].filter(Boolean).join('\n'),
  )
}

/** Without the user's identity from the upstream, the page cannot tell whose apps are whose. */
export function renderConnectionsUnavailable(): string {
  return renderPage(
    'Connected apps are not available here',
    [
      '<p>This sign-in service cannot tell which connected apps are yours: the NeonPanel sign-in does not tell it who you are.</p>',
      '<p class="hint">To disconnect an app, remove the connector in the app itself, or ask your NeonPanel administrator: they can see and revoke every connected app.</p>',
    ].join('\n'),
  )
}

/** After signing out of the page: the apps stay connected. */
export function renderSignedOutPage(signInAgain: string): string {
  return renderPage(
    'You signed out of this page',
    [
      '<p>Your connected apps stay connected; only this page\'s sign-in ended.</p>',
      `<p class="manage"><a href="${escapeHtml(signInAgain)}">Sign in again to manage connected apps</a></p>`,
    ].join('\n'),
  )
}

/** A lifetime in words: "10 minutes", "30 seconds". */
export function describeSeconds(seconds: number): string {
  if (seconds % 60 === 0) return seconds === 60 ? '1 minute' : `${seconds / 60} minutes`
  return seconds === 1 ? '1 second' : `${seconds} seconds`
}

/** Sends the browser on: 302 after a GET, 303 after a POST so that the next request is a GET (RFC 9700 §4.12). */
export function redirectBrowser(request: FastifyRequest, reply: FastifyReply, url: string) {
  return reply.header('cache-control', 'no-store').redirect(url, request.method === 'POST' ? 303 : 302)
}
