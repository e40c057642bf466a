// A tiny cookie-keeping HTTP "browser" for driving redirect flows in tests.
// Cookies are kept per origin (host:port, unlike real browsers which ignore
// the port, RFC 6265 §8.5) and honour Path and expiry; Domain, Secure and
// SameSite are ignored — everything here is http on 127.0.0.1.

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  expiresAt?: number;
}

export class CookieBrowser {
  /** origin → cookies, keyed by `${path} ${name}` as RFC 6265 §5.3 step 11 does. */
  private readonly jar = new Map<string, Map<string, StoredCookie>>();

  async get(url: string | URL): Promise<Response> {
    return this.request(new URL(url), { method: 'GET' });
  }

  async postForm(url: string | URL, fields: Record<string, string>): Promise<Response> {
    return this.request(new URL(url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }

  /** The `Cookie` header value this browser would send to `url` (empty when none). */
  cookieHeader(url: string | URL): string {
    const target = new URL(url);
    const now = Date.now();
    const cookies = [...(this.jar.get(target.origin)?.values() ?? [])]
      .filter((c) => (c.expiresAt === undefined || c.expiresAt > now) && pathMatches(target.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length); // longer paths first (RFC 6265 §5.4)
    return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  private async request(url: URL, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = this.cookieHeader(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.store(url, response.headers.getSetCookie());
    return response;
  }

  private store(url: URL, setCookies: string[]): void {
    let jar = this.jar.get(url.origin);
    if (!jar) this.jar.set(url.origin, (jar = new Map()));
    for (const header of setCookies) {
      const cookie = parseSetCookie(header, url);
      if (!cookie) continue;
      const key = `${cookie.path} ${cookie.name}`;
      if (cookie.expiresAt !== undefined && cookie.expiresAt <= Date.now()) jar.delete(key);
      else jar.set(key, cookie);
    }
  }
}

function parseSetCookie(header: string, url: URL): StoredCookie | undefined {
  const [pair = '', ...attributes] = header.split(';');
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const cookie: StoredCookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    path: defaultPath(url),
  };
  let maxAge: number | undefined;
  for (const attribute of attributes) {
    const [rawName = '', ...rest] = attribute.split('=');
    const name = rawName.trim().toLowerCase();
    const value = rest.join('=').trim();
    if (name === 'path' && value.startsWith('/')) cookie.path = value;
    if (name === 'expires' && !Number.isNaN(Date.parse(value))) cookie.expiresAt = Date.parse(value);
    if (name === 'max-age' && /^-?\d+$/.test(value)) maxAge = Number(value);
  }
  // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
  if (maxAge !== undefined) cookie.expiresAt = Date.now() + maxAge * 1000;
  return cookie;
}

/** RFC 6265 §5.1.4 default-path: the request path up to its last '/'. */
function defaultPath(url: URL): string {
  const path = url.pathname;
  const last = path.lastIndexOf('/');
  return last <= 0 ? '/' : path.slice(0, last);
}

/** RFC 6265 §5.1.4 path-match. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

export interface SignInResult {
  /** The first redirect Location accepted by `isClientRedirect` (not fetched). */
  redirect?: URL;
  /** The final non-redirect response when no client redirect was reached. */
  response?: Response;
  /** That response's body text. */
  body?: string;
}

/**
 * Follows redirects from startUrl; approves the gateway's consent page once when it
 * shows; when a page contains the upstream's sign-in form, submits the account; stops and returns the first redirect Location whose URL satisfies
 * `isClientRedirect`, or the final non-redirect response.
 */
export async function signInAndFollow(
  browser: CookieBrowser,
  startUrl: string,
  account: { username: string; password: string },
  isClientRedirect: (url: URL) => boolean,
  maxSteps = 20,
): Promise<SignInResult> {
  let url = new URL(startUrl);
  let response = await browser.get(url);
  let signedIn = false;
  let answeredConsent = false;

  for (let step = 0; step < maxSteps; step++) {
    const location = response.headers.get('location');
    if (isRedirect(response.status) && location) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (isClientRedirect(next)) return { redirect: next };
      url = next;
      response = await browser.get(url);
      continue;
    }

    const body = await response.text();
    const consent = consentForm(body);
    if (consent && !answeredConsent) {
      // The gateway's consent page: approve, as a user who started the connection would.
      answeredConsent = true;
      url = new URL(consent.action, url);
      response = await browser.postForm(url, { ...consent.fields, decision: 'approve' });
      continue;
    }
    const formAction = signInFormAction(body);
    // Submit once only: a second sign-in page means the credentials were rejected.
    if (formAction === undefined || signedIn) return { response, body };
    signedIn = true;
    url = new URL(formAction, url);
    response = await browser.postForm(url, { username: account.username, password: account.password });
  }
  throw new Error(`signInAndFollow: no client redirect within ${maxSteps} steps (last URL ${url.href})`);
}

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

/**
 * Recognises the stand-in upstream's sign-in page: a form with a `password` input.
 * Returns its action (HTML-unescaped), or undefined when the page has no such form.
 */
export function signInFormAction(html: string): string | undefined {
  for (const [, attributes = '', inner = ''] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    if (!/\bname="password"/i.test(inner)) continue;
    const action = /\baction="([^"]*)"/i.exec(attributes)?.[1];
    return action === undefined ? undefined : unescapeHtml(action);
  }
  return undefined;
}

/**
 * Recognises the gateway's consent page: a form carrying `pending` and `csrf`.
 * Returns its action and hidden fields (HTML-unescaped).
 */
export function consentForm(html: string): { action: string; fields: Record<string, string> } | undefined {
  for (const [, attributes = '', inner = ''] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const fields: Record<string, string> = {};
    for (const [, name = '', value = ''] of inner.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
      fields[unescapeHtml(name)] = unescapeHtml(value);
    }
    const action = /\baction="([^"]*)"/i.exec(attributes)?.[1];
    if (action !== undefined && fields.pending && fields.csrf) return { action: unescapeHtml(action), fields };
  }
  return undefined;
}

function unescapeHtml(text: string): string {
  return text
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replaceAll('&amp;', '&');
}
