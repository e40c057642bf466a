/**
 * The doctor's HTTP client: plain fetch from the outside, as an MCP client or
 * a browser would call. Every request has a deadline, never follows a
 * redirect by itself, and a failure to get an answer comes back as a value
 * that says why in words, never as an exception.
 */

/** An answer (any status), or why there was none. */
export type Outcome =
  | { ok: true; url: URL; status: number; headers: Headers; body: string }
  | { ok: false; url: URL; problem: string }

export interface Requester {
  request(url: string | URL, init?: RequestInit): Promise<Outcome>
}

/** Most of a body the doctor reads: metadata documents and pages are small. */
const MAX_BODY = 256 * 1024

/** A requester whose every request ends after `timeoutMs`, headers and body included. */
export function requester(timeoutMs: number, jar?: CookieJar): Requester {
  return {
    async request(target, init = {}) {
      const url = new URL(target)
      const headers = new Headers(init.headers)
      const cookie = jar?.header(url)
      if (cookie) headers.set('cookie', cookie)
      try {
        const response = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
        jar?.store(url, response.headers.getSetCookie())
        return { ok: true, url, status: response.status, headers: response.headers, body: await readBody(response) }
      } catch (err) {
        return { ok: false, url, problem: describeFailure(err, timeoutMs) }
      }
    },
  }
}

async function readBody(response: Response): Promise<string> {
  if (!response.body) return ''
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of response.body) {
    text += decoder.decode(chunk as Uint8Array, { stream: true })
    if (text.length > MAX_BODY) {
      await response.body.cancel()
      break
    }
  }
  return text
}

const TLS_CODE = /^(CERT_|ERR_TLS_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_SSL_)/

/** Why a request got no answer, in words an operator acts on. */
export function describeFailure(err: unknown, timeoutMs: number): string {
  const error = err as { name?: string; message?: string; cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return `no answer within ${timeoutMs} ms`
  const cause = error.cause
  const code = cause?.code ?? cause?.errors?.[0]?.code
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host name not found (DNS)'
  if (code === 'ECONNRESET') return 'connection reset'
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'connection timed out'
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable'
  if (code && TLS_CODE.test(code)) return `TLS failed (${code}): ${cause?.message ?? ''}`.trim()
  return cause?.message ?? error.message ?? String(err)
}

/**
 * Cookies as a browser keeps them for a short flow: per origin, name and
 * value only (Path, Secure and SameSite do not matter for the few requests
 * the flow makes), removed when the server expires them.
 */
export class CookieJar {
  readonly #cookies = new Map<string, Map<string, string>>()

  header(url: URL): string {
    return [...(this.#cookies.get(url.origin) ?? new Map<string, string>())].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  store(url: URL, setCookies: string[]) {
    let cookies = this.#cookies.get(url.origin)
    if (!cookies) this.#cookies.set(url.origin, (cookies = new Map()))
    for (const header of setCookies) {
      const [pair = '', ...attributes] = header.split(';')
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const expired = attributes.some((attribute) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(attribute))
      if (expired) cookies.delete(name)
      else cookies.set(name, pair.slice(eq + 1).trim())
    }
  }
}

/** A JSON object from an answer, or undefined when the answer is not one. */
export function jsonObject(outcome: Outcome & { ok: true }): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(outcome.body)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** What an answer was, for a message: `404 text/html`. */
export function describeAnswer(outcome: Outcome & { ok: true }): string {
  const type = outcome.headers.get('content-type')?.split(';')[0]
  return type ? `${outcome.status} ${type}` : String(outcome.status)
}

/** The readable text of an HTML page or other body, shortened: what an error page says. */
export function pageText(body: string, max = 240): string {
  const text = body
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim()
  return text.length > max ? `${text.slice(0, max - 3)}...` : text
}
