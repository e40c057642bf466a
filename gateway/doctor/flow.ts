/**
 * What a connector does: register with each redirect URI ops expect to work,
 * then one scripted flow as ChatGPT's connector and a browser would run it,
 * through the consent page to the upstream's sign-in page, without signing in.
 */
import { randomBytes } from 'node:crypto'
import type { Settings } from '../config/schema.ts'
import { newVerifier, s256 } from '../policy/pkce.ts'
import { PRESET_NAMES, REDIRECT_PRESETS, presetsAllowing, type PresetName } from '../policy/presets.ts'
import { normaliseRedirectUri } from '../policy/redirect-uri.ts'
import { describeAnswer, jsonObject, pageText, requester, CookieJar, type Outcome, type Requester } from './http.ts'
import type { Report } from './report.ts'
import type { UpstreamView } from './upstream.ts'

/** A redirect URI to try, and where the expectation comes from. */
export interface RedirectCandidate {
  uri: string
  /** `chatgpt preset`, `allowedRedirectUris` or `--redirect-uri`. */
  source: string
  preset?: PresetName | undefined
}

/** The port a representative URI takes where a pattern allows any. */
const EXAMPLE_PORT = 49152
const EXAMPLE_SEGMENT = 'doctor-check'

/** A URI a pattern of the allowlist allows: `https://chatgpt.com/connector/oauth/*` → `…/oauth/doctor-check`. */
export function exampleRedirectUri(pattern: string): string {
  return pattern
    .replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*):\*(?=[/?]|$)/, `$1:${EXAMPLE_PORT}`)
    .replace(/\/\*\*$/, `/${EXAMPLE_SEGMENT}`)
    .replace(/\*(?=[/?]|$)/g, EXAMPLE_SEGMENT)
}

/** The URIs given on the command line, one per switched-on preset, and one per allowedRedirectUris entry; each once. */
export function redirectCandidates(settings: Settings, extra: readonly string[]): RedirectCandidate[] {
  const candidates: RedirectCandidate[] = [
    ...extra.map((uri) => ({ uri, source: '--redirect-uri' })),
    ...PRESET_NAMES.filter((name) => settings.redirectPresets[name]).map((name) => ({ uri: exampleRedirectUri(REDIRECT_PRESETS[name][0]), source: `${name} preset`, preset: name })),
    ...settings.allowedRedirectUris.map((pattern) => ({ uri: exampleRedirectUri(pattern), source: 'allowedRedirectUris' })),
  ]
  return candidates.filter((candidate, i) => candidates.findIndex((other) => other.uri === candidate.uri) === i)
}

/** A registration as ChatGPT's connector sends it (public client, both grants). */
function register(http: Requester, endpoint: string, redirectUri: string): Promise<Outcome> {
  return http.request(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      client_name: 'oauth-gateway doctor',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  })
}

function oauthError(answer: Outcome & { ok: true }): string {
  const body = jsonObject(answer)
  if (typeof body?.error !== 'string') return describeAnswer(answer)
  return typeof body.error_description === 'string' ? `${body.error}: ${body.error_description}` : body.error
}

/** When the gateway's rate limit stopped a request (429): when to run again. */
function retryLater(answer: Outcome & { ok: true }): string | undefined {
  if (answer.status !== 429) return undefined
  const wait = answer.headers.get('retry-after')
  return `the gateway's rate limit (limits in its configuration) stopped this request: run the doctor again ${wait ? `in ${wait} s` : 'later'}`
}

function refusedFix(candidate: RedirectCandidate): string {
  if (candidate.preset) return `switch on redirectPresets.${candidate.preset} in the configuration file of every gateway replica and restart them (presets are read at start-up)`
  if (candidate.source === 'allowedRedirectUris') return 'the running gateway does not allow this allowedRedirectUris entry: give every replica the same file (ALLOWED_REDIRECT_URIS replaces its list), then reload it (SIGHUP) or restart'
  const checked = normaliseRedirectUri(candidate.uri)
  if (!checked.ok) return `no gateway accepts it: the redirect URI ${checked.reason}`
  const presets = presetsAllowing(checked.url)
  if (presets.length) return `switch on redirectPresets.${presets[0]} in the configuration file of every gateway replica and restart them`
  return 'add it, or a pattern that covers it, to allowedRedirectUris (or ALLOWED_REDIRECT_URIS) on every gateway replica, then reload (SIGHUP) or restart'
}

/** Registers once per candidate; returns the redirect URIs the gateway accepted, in the candidates' order. */
export async function checkRedirectUris(report: Report, http: Requester, endpoint: string, candidates: readonly RedirectCandidate[]): Promise<string[]> {
  const accepted: string[] = []
  for (const candidate of candidates) {
    const name = `redirect URI (${candidate.source})`
    const answer = await register(http, endpoint, candidate.uri)
    if (!answer.ok) {
      report.fail(name, `${answer.problem} (POST ${endpoint})`, 'the gateway answered its metadata but not registration: check the ingress routes')
      continue
    }
    const client = answer.status === 201 ? jsonObject(answer) : undefined
    if (typeof client?.client_id === 'string') {
      report.pass(name, `${candidate.uri} registered`)
      accepted.push(candidate.uri)
    } else if (answer.status === 400 && jsonObject(answer)?.error === 'invalid_redirect_uri') {
      report.fail(name, `${candidate.uri} refused: ${oauthError(answer)}`, refusedFix(candidate))
    } else {
      report.fail(name, `${candidate.uri}: registration answers ${oauthError(answer)}`, retryLater(answer) ?? 'the gateway could not register the client: its log has a line for this request')
    }
  }
  return accepted
}

export interface FlowInput {
  settings: Settings
  /** The gateway's registration and authorization endpoints, from its metadata. */
  endpoints: { registration: string; authorization: string }
  upstream: UpstreamView | undefined
  /** The redirect URI the connector uses: one the gateway accepted above. */
  redirectUri: string
  timeoutMs: number
}

const FLOW = 'connector flow'

/** Register, authorize, consent, and on to the upstream's sign-in page, with one browser's cookies. */
export async function checkConnectorFlow(report: Report, input: FlowInput) {
  const browser = requester(input.timeoutMs, new CookieJar())
  const registered = await register(browser, input.endpoints.registration, input.redirectUri)
  const client = registered.ok && registered.status === 201 ? jsonObject(registered) : undefined
  if (typeof client?.client_id !== 'string') {
    const fix = (registered.ok && retryLater(registered)) || 'see the redirect URI checks above, and the gateway\'s log for this registration'
    return report.fail(`${FLOW} (register)`, registered.ok ? oauthError(registered) : registered.problem, fix)
  }
  report.pass(`${FLOW} (register)`, `client for ${input.redirectUri}`)

  const authorization = authorizationRequest(input, client.client_id)
  const answer = await browser.request(authorization, { headers: { accept: 'text/html' } })
  const upstreamUrl = await passAuthorization(report, browser, input, answer)
  if (upstreamUrl) await reachSignInPage(report, browser, input, upstreamUrl)
}

function authorizationRequest(input: FlowInput, clientId: string): URL {
  const url = new URL(input.endpoints.authorization)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: input.redirectUri,
    code_challenge: s256(newVerifier()),
    code_challenge_method: 'S256',
    state: randomBytes(12).toString('base64url'),
    resource: input.settings.mcpResource,
  }).toString()
  return url
}

/** The consent form's action and hidden fields, when the page is the gateway's consent page. */
function consentForm(html: string): { action: string; fields: Record<string, string> } | undefined {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html)
  if (!form) return undefined
  const unescape = (value: string) => value.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
  const fields = Object.fromEntries([...form[2]!.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)].map(([, key = '', value = '']) => [unescape(key), unescape(value)]))
  return fields.pending && fields.csrf ? { action: unescape(form[1]!), fields } : undefined
}

function redirectTarget(answer: Outcome & { ok: true }): URL | undefined {
  const location = answer.headers.get('location')
  return answer.status >= 300 && answer.status < 400 && location && URL.canParse(location, answer.url.href) ? new URL(location, answer.url) : undefined
}

/** An error sent back to the client's redirect URI, in words. */
function clientError(url: URL): string {
  const error = url.searchParams.get('error') ?? 'no error parameter'
  const description = url.searchParams.get('error_description')
  return description ? `${error}: ${description}` : error
}

/** What to do about an answer that stopped the flow at the gateway: an error page, or the error sent to the client. */
function gatewayRefusalFix(answer: Outcome & { ok: true }, error?: string | null): string {
  const limited = retryLater(answer)
  if (limited) return limited
  if (answer.status >= 500 || error === 'temporarily_unavailable' || error === 'server_error') {
    return 'the gateway could not go on: the upstream checks above, and the gateway\'s log for this request, name the cause'
  }
  return 'the gateway refused the authorization request: its description above and its log for this request name the step'
}

/** /authorize, then the consent page answered as a browser would; the upstream authorization URL the browser is sent to. */
async function passAuthorization(report: Report, browser: Requester, input: FlowInput, answer: Outcome): Promise<URL | undefined> {
  const name = `${FLOW} (authorize)`
  if (!answer.ok) return void report.fail(name, `${answer.problem} (${answer.url.origin}${answer.url.pathname})`, 'the gateway answered its metadata but not /authorize: check the ingress routes')
  const target = redirectTarget(answer)
  const consentName = `${FLOW} (consent)`
  if (target) {
    if (target.href.startsWith(input.redirectUri)) return void report.fail(name, `the gateway sent the client an error: ${clientError(target)}`, gatewayRefusalFix(answer, target.searchParams.get('error')))
    const problem = upstreamRedirectProblem(input, target)
    if (problem) return void report.fail(name, problem.detail, problem.fix)
    report.pass(name, `no consent page (a trusted client): ${describeUpstreamRedirect(target)}`)
    report.skip(consentName, 'the gateway trusts this client (consent.trustedRedirectUris or trustedClientIds)')
    return target
  }
  const form = answer.status === 200 ? consentForm(answer.body) : undefined
  if (!form) return void report.fail(name, `${describeAnswer(answer)}: ${pageText(answer.body)}`, gatewayRefusalFix(answer))
  report.pass(name, 'the consent page')

  // As a browser posts the form: from the page's origin, with its cookie, the hidden fields and the Approve button.
  const action = new URL(form.action, answer.url)
  const site = action.origin === answer.url.origin ? 'same-origin' : 'cross-site'
  const approved = await browser.request(action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: answer.url.origin, 'sec-fetch-site': site, accept: 'text/html' },
    body: new URLSearchParams({ ...form.fields, decision: 'approve' }).toString(),
  })
  if (!approved.ok) return void report.fail(consentName, `${approved.problem} (POST ${action.href})`, 'the consent form posts to a URL this host cannot reach: check publicUrl (GATEWAY_PUBLIC_URL)')
  const next = redirectTarget(approved)
  if (!next) return void report.fail(consentName, `Approve answers ${describeAnswer(approved)}: ${pageText(approved.body)}`, gatewayRefusalFix(approved))
  if (next.href.startsWith(input.redirectUri)) return void report.fail(consentName, `the gateway sent the client an error: ${clientError(next)}`, gatewayRefusalFix(approved, next.searchParams.get('error')))
  const problem = upstreamRedirectProblem(input, next)
  if (problem) return void report.fail(consentName, problem.detail, problem.fix)
  report.pass(consentName, `approved; ${describeUpstreamRedirect(next)}`)
  return next
}

function describeUpstreamRedirect(target: URL): string {
  return `sent to ${target.origin}${target.pathname} with redirect_uri ${target.searchParams.get('redirect_uri')} and PKCE S256`
}

/** The browser must go to the upstream's authorization endpoint, with PKCE S256. */
function upstreamRedirectProblem(input: FlowInput, target: URL): { detail: string; fix: string } | undefined {
  const expected = input.upstream && new URL(input.upstream.authorizationEndpoint)
  if (expected && `${target.origin}${target.pathname}` !== `${expected.origin}${expected.pathname}`) {
    return {
      detail: `the browser is sent to ${target.origin}${target.pathname}, not the upstream's authorization endpoint ${expected.href}`,
      fix: 'the running gateway uses another upstream than this configuration: give every replica the same upstream.issuer (UPSTREAM_ISSUER)',
    }
  }
  if (target.searchParams.get('code_challenge_method') !== 'S256' || !target.searchParams.get('code_challenge')) {
    return { detail: `the upstream authorization request carries no PKCE S256 (${target.origin}${target.pathname})`, fix: 'what answers at publicUrl is not this gateway: route publicUrl to the gateway' }
  }
  return undefined
}

/** Follows the upstream's redirects to a page: its sign-in page, unless it refuses the gateway's request. */
async function reachSignInPage(report: Report, browser: Requester, input: FlowInput, start: URL) {
  const name = `${FLOW} (upstream sign-in page)`
  const callback = `${input.settings.publicUrl}/callback`
  const clientId = input.settings.upstream.clientId
  const refusedFix = `the upstream refused the gateway's authorization request: check that ${callback} is a registered redirect URI of the upstream client ${clientId} (UPSTREAM_CLIENT_ID), that this client exists and may use the authorization code grant, and which scopes it may ask for`
  let url = start
  for (let hop = 0; hop < 10; hop++) {
    const answer = await browser.request(url, { headers: { accept: 'text/html' } })
    if (!answer.ok) return report.fail(name, `${answer.problem} (${url.origin}${url.pathname})`, `browsers must reach the upstream's authorization endpoint ${url.origin}: check DNS and TLS for it`)
    const next = redirectTarget(answer)
    if (!next) {
      const html = /^text\/html\b/i.test(answer.headers.get('content-type') ?? '')
      if (answer.status >= 200 && answer.status < 300 && html) return report.pass(name, `${answer.status} text/html at ${url.origin}${url.pathname} (not signed in)`)
      return report.fail(name, `${describeAnswer(answer)} at ${url.origin}${url.pathname}: ${pageText(answer.body)}`, refusedFix)
    }
    if (next.href.startsWith(callback)) return report.fail(name, `the upstream sent the browser straight back: ${clientError(next)}`, refusedFix)
    url = next
  }
  report.fail(name, `more than 10 redirects from ${start.origin}${start.pathname}`, 'the upstream redirects in a loop: look at its logs and its cookie settings')
}
