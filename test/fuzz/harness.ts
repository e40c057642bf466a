/**
 * Runs generated requests against a running gateway over real HTTP: the
 * gateway as production starts it (`node gateway/server.ts`, its own
 * process) in front of the real oidc-provider stand-in. Shared by the short
 * run in `npm test` and the long one in `npm run fuzz`.
 */
import fc from 'fast-check'
import { Pool } from 'undici'
import { consentForm } from '../support/browser.ts'
import { authorizationRequest, challengeOf, gatewayCode, registerClient, tokenRequest, type RegisteredClient } from '../support/gateway-flow.ts'
import { startGatewayProcess } from '../support/gateway-process.ts'
import { freePort } from '../support/ports.ts'
import { CHATGPT_REDIRECT, gatewayFile, TEST_SECRET } from '../support/stack.ts'
import { startUpstream, type StandInUpstream } from '../support/upstream.ts'
import { anyRequest, problemsWith, type Endpoint, type FuzzAnswer, type FuzzContext, type FuzzRequest } from './requests.ts'

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'
const LOOPBACK_REDIRECT = 'http://127.0.0.1/callback'
/** A request that gets no answer within this long is a hang. */
const ANSWER_WITHIN_MS = 15_000

/** Registers the fuzzer's clients and collects real states, codes and a refresh token to mix into the garbage. */
export async function prepareContext(gatewayUrl: string, upstream: StandInUpstream, mcpResource: string): Promise<FuzzContext> {
  const clients: RegisteredClient[] = [
    await registerClient(gatewayUrl, { client_name: 'fuzz public', redirect_uris: [CHATGPT_REDIRECT, LOOPBACK_REDIRECT], token_endpoint_auth_method: 'none' }),
    await registerClient(gatewayUrl, { client_name: 'fuzz basic', redirect_uris: [CLAUDE_REDIRECT], token_endpoint_auth_method: 'client_secret_basic' }),
    await registerClient(gatewayUrl, { client_name: 'fuzz post', redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'client_secret_post' }),
  ]
  const discovery = (await (await fetch(`${upstream.issuer}/.well-known/openid-configuration`)).json()) as { authorization_endpoint: string }

  const states: string[] = []
  for (let i = 0; i < 12; i++) {
    const { url } = authorizationRequest(gatewayUrl, clients[i % clients.length]!)
    const answer = await fetch(url, { redirect: 'manual' })
    const state = new URL(answer.headers.get('location')!).searchParams.get('state')
    if (state) states.push(state)
  }

  // The loopback redirect URI is not trusted, so /authorize answers with the consent page.
  const consents: FuzzContext['consents'] = []
  for (let i = 0; i < 20; i++) {
    const { url } = authorizationRequest(gatewayUrl, clients[0]!, LOOPBACK_REDIRECT)
    const page = await fetch(url, { redirect: 'manual' })
    const form = consentForm(await page.text())
    const cookie = page.headers.get('set-cookie')?.split(';')[0]
    if (!form?.fields.pending || !form.fields.csrf || !cookie) throw new Error(`no consent page for the fuzzer: ${page.status}`)
    consents.push({ pending: form.fields.pending, csrf: form.fields.csrf, cookie })
  }

  const codes: FuzzContext['codes'] = []
  for (const index of [0, 1, 0, 2]) {
    const { code, verifier } = await gatewayCode(gatewayUrl, clients[index]!, upstream.account)
    codes.push({ code, verifier, challenge: challengeOf(verifier), client: index })
  }
  // One code exchanged for a real refresh token; the code stays in the pool, now used.
  const exchanged = await tokenRequest(gatewayUrl, { grant_type: 'authorization_code', code: codes[0]!.code, code_verifier: codes[0]!.verifier, client_id: clients[0]!.client_id, redirect_uri: CHATGPT_REDIRECT })
  const tokens = (await exchanged.json()) as { refresh_token?: string }
  if (!tokens.refresh_token) throw new Error(`no refresh token for the fuzzer: ${JSON.stringify(tokens)}`)

  return {
    upstreamIssuer: upstream.issuer,
    upstreamAuthorizationEndpoint: discovery.authorization_endpoint,
    mcpResource,
    clients,
    redirectUris: [...new Set(clients.flatMap((client) => client.redirect_uris))],
    states,
    gatewayOrigin: new URL(gatewayUrl).origin,
    consents,
    codes,
    refreshTokens: [{ token: tokens.refresh_token, client: 0 }],
  }
}

export interface FuzzStats {
  requests: number
  /** Requests undici refused to send (header or path characters it does not allow). */
  unsendable: number
  statuses: Record<string, number>
  byEndpoint: Record<string, number>
  /** How often each endpoint gave each answer: `token 400 invalid_grant`, `authorize 302`. */
  outcomes: Record<string, number>
  /** fast-check's report for each worker that found a broken rule (seed, path, shrunk counterexample). */
  failures: string[]
}

export interface FuzzOptions {
  requests: number
  seed: number
  /** Requests in flight at once, each worker a fast-check run of its own (seed + worker). */
  concurrency?: number
  /** Called about every `every` requests. */
  progress?: (sent: number) => void
  every?: number
}

/** Sends `requests` generated requests to `url` and checks every answer against the rules in requests.ts. */
export async function fuzzRequests(url: string, context: FuzzContext, options: FuzzOptions): Promise<FuzzStats> {
  const concurrency = options.concurrency ?? 8
  const pool = new Pool(url, { connections: concurrency, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: ANSWER_WITHIN_MS, bodyTimeout: ANSWER_WITHIN_MS })
  const stats: FuzzStats = { requests: 0, unsendable: 0, statuses: {}, byEndpoint: {}, outcomes: {}, failures: [] }
  const every = options.every ?? 10_000

  async function send(request: FuzzRequest): Promise<FuzzAnswer | undefined> {
    let response
    try {
      response = await pool.request({ method: request.method, path: request.path, headers: request.headers, body: request.body })
    } catch (err) {
      if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG') {
        stats.unsendable++
        return undefined
      }
      throw new Error(`no answer: ${(err as Error).message}`, { cause: err })
    }
    return { status: response.statusCode, headers: response.headers, body: await response.body.text() }
  }

  const property = fc.asyncProperty(anyRequest(context), async (request) => {
    const answer = await send(request)
    if (!answer) return
    stats.requests++
    stats.statuses[answer.status] = (stats.statuses[answer.status] ?? 0) + 1
    stats.byEndpoint[request.endpoint] = (stats.byEndpoint[request.endpoint] ?? 0) + 1
    const outcome = `${request.endpoint} ${answer.status} ${errorCodeOf(answer)}`.trim()
    stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1
    if (options.progress && stats.requests % every === 0) options.progress(stats.requests)
    const problems = problemsWith(request, answer, context)
    if (problems.length) throw new Error(`${problems.join('; ')}\n  answer: ${answer.status} ${answer.body.slice(0, 300)}`)
  })

  const runs = Array.from({ length: concurrency }, (_, worker) => Math.floor(options.requests / concurrency) + (worker < options.requests % concurrency ? 1 : 0))
  try {
    const details = await Promise.all(runs.map((numRuns, worker) => fc.check(property, { seed: options.seed + worker, numRuns })))
    for (const [worker, run] of details.entries()) {
      if (!run.failed) continue
      const problem = run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance)
      const request = run.counterexample?.[0]
      stats.failures.push(
        [
          `worker ${worker}, seed ${run.seed}, path ${run.counterexamplePath}, shrunk ${run.numShrinks} times`,
          `  broken: ${truncate(problem, 1500)}`,
          `  request: ${request ? describeRequest(request) : 'none'}`,
        ].join('\n'),
      )
    }
  } finally {
    await pool.close()
  }
  return stats
}

/** The OAuth error code of a JSON answer, or of a redirect back to the client. */
function errorCodeOf(answer: FuzzAnswer): string {
  const location = answer.headers.location
  if (typeof location === 'string' && URL.canParse(location)) return new URL(location).searchParams.get('error') ?? ''
  if (!String(answer.headers['content-type']).startsWith('application/json')) return ''
  try {
    const error = (JSON.parse(answer.body) as { error?: unknown }).error
    return typeof error === 'string' ? error : ''
  } catch {
    return ''
  }
}

/** A failing request, short enough to read: long runs of one character are counted, not printed. */
export function describeRequest(request: FuzzRequest): string {
  const squeeze = (text: string) => truncate(text.replace(/(.)\1{19,}/g, (run, ch: string) => `${ch}{×${run.length}}`), 1500)
  const body = request.body ? ` body(${request.body.length} bytes)=${JSON.stringify(squeeze(request.body.toString('latin1')))}` : ''
  return `${request.method} ${squeeze(request.path)} headers=${squeeze(JSON.stringify(request.headers))}${body}`
}

function truncate(text: string, length: number) {
  return text.length > length ? `${text.slice(0, length)}…` : text
}

export interface FuzzReport extends FuzzStats {
  seed: number
  durationMs: number
  gateway: {
    /** The process still runs and answers /healthz. */
    alive: boolean
    rssBytes: number
    peakRssBytes: number
    /** The live heap after a full GC, sampled every `every` requests (the first sample is taken before the first request). */
    liveHeap: Array<{ after: number; heapUsedBytes: number }>
    /** Live heap growth from the sample at a tenth of the run (after warm-up) to the end, in bytes. */
    liveHeapGrowthBytes: number
    /** Log lines about unhandled rejections, uncaught exceptions or anything fatal. */
    crashes: Array<Record<string, unknown>>
    /** Error-level log lines (5xx answers), by error code. */
    errorsLogged: Record<string, number>
  }
  /** Peak memory of the fuzzing process itself (the generator and the upstream stand-in). */
  fuzzerPeakRssBytes: number
  endpoints: Endpoint[]
}

/** Starts the upstream stand-in and the gateway process, fuzzes, and reports; everything is stopped afterwards. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const port = await freePort()
  const gatewayUrl = `http://127.0.0.1:${port}`
  const upstream = await startUpstream({ redirectUris: [`${gatewayUrl}/callback`] })
  // The MCP server is not needed: the gateway only names it.
  const mcpResource = 'http://127.0.0.1:3001/mcp'
  const errorsLogged: Record<string, number> = {}
  const gateway = await startGatewayProcess({
    port,
    memoryProbe: true,
    // The fuzzer harvests real sealed states from /authorize redirects, so its clients' redirect URIs skip the consent page.
    // Rate limits off: from one address they would soon answer every request 429 and hide the handlers from the fuzzer.
    config: { ...gatewayFile(gatewayUrl, upstream.issuer, mcpResource), consent: { trustedRedirectUris: [CHATGPT_REDIRECT, CLAUDE_REDIRECT] }, limits: { enabled: false } },
    env: { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: upstream.clientSecret },
    keep: (entry) => {
      if (entry.level === 50) errorsLogged[String(entry.error ?? entry.msg)] = (errorsLogged[String(entry.error ?? entry.msg)] ?? 0) + 1
      return entry.level >= 60 || /unhandled|uncaught/i.test(String(entry.msg))
    },
  })
  try {
    const context = await prepareContext(gatewayUrl, upstream, mcpResource)
    const every = options.every ?? Math.max(1, Math.floor(options.requests / 10))
    const samples: Array<Promise<{ after: number; heapUsedBytes: number }>> = []
    const sample = (after: number) => samples.push(gateway.liveMemory().then((probe) => ({ after, heapUsedBytes: probe.heapUsed })))
    sample(0)
    const started = performance.now()
    const stats = await fuzzRequests(gatewayUrl, context, {
      ...options,
      every,
      progress: (sent) => {
        sample(sent)
        options.progress?.(sent)
      },
    })
    const durationMs = performance.now() - started
    const health = await fetch(`${gatewayUrl}/healthz`).then((response) => response.status, () => 0)
    if (stats.requests % every !== 0) sample(stats.requests)
    const liveHeap = await Promise.all(samples)
    const warm = liveHeap.find((entry) => entry.after >= options.requests / 10) ?? liveHeap[0]!
    const memory = gateway.memory()
    return {
      ...stats,
      seed: options.seed,
      durationMs,
      gateway: {
        alive: gateway.child.exitCode === null && health === 200,
        rssBytes: memory.rss,
        peakRssBytes: memory.peak,
        liveHeap,
        liveHeapGrowthBytes: liveHeap.at(-1)!.heapUsedBytes - warm.heapUsedBytes,
        crashes: gateway.logs,
        errorsLogged,
      },
      fuzzerPeakRssBytes: process.resourceUsage().maxRSS * 1024,
      endpoints: Object.keys(stats.byEndpoint) as Endpoint[],
    }
  } finally {
    await gateway.stop()
    await upstream.close()
  }
}

/** The seed from FUZZ_SEED, or a fresh one. */
export function seedFromEnvironment(): number {
  const given = process.env.FUZZ_SEED
  if (given !== undefined && given !== '') {
    if (!/^-?\d+$/.test(given)) throw new Error(`FUZZ_SEED must be an integer, not ${given}`)
    return Number(given)
  }
  return Math.floor(Math.random() * 2 ** 31)
}
