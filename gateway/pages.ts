/**
 * HTML pages shown in the browser, all from one template (views/page.html).
 * Everything interpolated is escaped; the only inline style is allowed by its
 * hash, so the Content-Security-Policy forbids everything else.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'

const template = readFileSync(new URL('./views/page.html', import.meta.url), 'utf8')
const style = /<style>([\s\S]*?)<\/style>/.exec(template)?.[1] ?? ''
const styleHash = createHash('sha256').update(style).digest('base64')

/** Headers every page carries (RFC 9700 §4.16: no framing). */
export const PAGE_HEADERS = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; style-src 'sha256-${styleHash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
})

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
}

/** Renders the template; `body` must already be safe HTML. */
export function renderPage(title: string, body: string): string {
  return template.replaceAll('{{title}}', escapeHtml(title)).replace('{{body}}', () => body)
}

/** The page for an error that cannot be sent back to the client. */
export function renderErrorPage(error: string, description: string, hint: string): string {
  return renderPage(
    'Sign-in could not continue',
    [
      `<p>${escapeHtml(description)}</p>`,
      `<p class="hint">${escapeHtml(hint)}</p>`,
      `<p class="hint">Error code: <code>${escapeHtml(error)}</code></p>`,
    ].join('\n'),
  )
}

/** Sends the browser on: 302 after a GET, 303 after a POST so that the next request is a GET (RFC 9700 §4.12). */
export function redirectBrowser(request: FastifyRequest, reply: FastifyReply, url: string) {
  return reply.header('cache-control', 'no-store').redirect(url, request.method === 'POST' ? 303 : 302)
}
