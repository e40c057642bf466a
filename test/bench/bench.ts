/**
 * npm run bench: requests per second and p50/p99 latency, in one run on one
 * machine, for the gateway's metadata endpoint, registration, the token
 * exchange through the gateway, the same exchange sent straight to the
 * stand-in upstream, and a bare Fastify route returning the same JSON (the
 * ceiling); then the gateway's resident memory over many completed flows.
 * Prints the figures, the ratios (the metadata one round by round too),
 * whether each target is met, and how the gateway's own metrics split its
 * token answers (the upstream call, its own work), and writes them to a JSON
 * file. Last, the refresh through the grant registry (refresh.ts): store
 * round trips per refresh and the time the registry adds, on the SQLite state
 * file and on Redis (skipped with a note when no Redis answers).
 *
 *   node test/bench/bench.ts [--short] [--out FILE]
 *
 * --short: a few seconds in all, for CI (figures printed, targets not judged).
 * Exits 1 when a measurement got an error answer, or, in a full run, when a
 * target is missed.
 */
import autocannon, { type Options, type Result } from 'autocannon'
import { writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { freePort } from '../support/ports.ts'
import { registerClient } from '../support/gateway-flow.ts'
import { sample } from '../support/metrics.ts'
import { CHATGPT_REGISTRATION, chatGptCode, gatewayTokenBody, inParallel, upstreamAuthorization, upstreamCode, upstreamTokenBody } from './flows.ts'
import { MCP_RESOURCE, METADATA_PATH, startCeiling, startGateway, startUpstreamProcess } from './processes.ts'
import { measureRefreshes, refreshLine, type RefreshFigures } from './refresh.ts'

const { values: args } = parseArgs({ options: { short: { type: 'boolean', default: false }, out: { type: 'string', default: 'test/bench/results.json' } } })
const short = args.short

/** How long and how hard each measurement runs. */
const PLAN = short
  ? { seconds: 1, warmupSeconds: 0.5, connections: 10, rounds: 2, roundSeconds: 1, codes: 100, tokenRounds: 1, tokenConnections: 1, flows: 300, warmupFlows: 100, flowWorkers: 4, refreshes: 50 }
  : { seconds: 5, warmupSeconds: 3, connections: 10, rounds: 20, roundSeconds: 2, codes: 250, tokenRounds: 6, tokenConnections: 1, flows: 50_000, warmupFlows: 10_000, flowWorkers: 8, refreshes: 500 }

/** refreshAddedRoundTrips: grant-storage round trips a refresh adds to the single flight's; refreshRegistryP50Ms: on the state file. */
const TARGETS = { metadataOfCeiling: 0.8, tokenAddedP50Ms: 2, memoryGrowth: 0.1, refreshAddedRoundTrips: 2, refreshRegistryP50Ms: 0.5 }

interface Figure {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  /** autocannon's percentiles are whole milliseconds; the mean is not. */
  meanMs: number
  requests: number
}

function figure(result: Result, what: string): Figure {
  const failed = result.errors + result.timeouts + result.non2xx
  if (failed > 0) throw new Error(`${what}: ${failed} of ${result.requests.total} requests failed (${JSON.stringify(result.statusCodeStats)}, ${result.errors} errors, ${result.timeouts} timeouts)`)
  return { requestsPerSecond: Math.round(result.requests.average), p50Ms: result.latency.p50, p99Ms: result.latency.p99, meanMs: round(result.latency.mean, 2), requests: result.requests.total }
}

interface Load {
  what: string
  options: Options
}

/** One run of `seconds` at PLAN.connections. */
async function run({ what, options }: Load, seconds: number): Promise<Figure> {
  return figure(await autocannon({ duration: seconds, connections: PLAN.connections, ...options }), what)
}

async function warmUp({ options }: Load) {
  await autocannon({ ...options, duration: PLAN.warmupSeconds })
}

async function load(what: string, options: Options): Promise<Figure> {
  await warmUp({ what, options })
  return run({ what, options }, PLAN.seconds)
}

/**
 * `rounds` short runs of `a` and of `b`, in pairs, after one warm-up of each.
 * This machine's speed moves by tens of percent from one few-second stretch
 * to the next, so each pair's ratio a/b compares two runs seconds apart, the
 * pairs alternate which runs first (a b, b a, ...) so that neither always
 * gets the machine first, and the ratio judged is the median of the pairs'.
 * Also each side's median round and, to compare with earlier runs, the ratio
 * of the best round of each.
 */
async function compare(rounds: number, a: Load, b: Load) {
  await warmUp(a)
  await warmUp(b)
  const roundsA: Figure[] = []
  const roundsB: Figure[] = []
  const roundRatios: number[] = []
  for (let done = 0; done < rounds; done++) {
    let figureA: Figure
    let figureB: Figure
    if (done % 2 === 0) {
      figureA = await run(a, PLAN.roundSeconds)
      figureB = await run(b, PLAN.roundSeconds)
    } else {
      figureB = await run(b, PLAN.roundSeconds)
      figureA = await run(a, PLAN.roundSeconds)
    }
    roundsA.push(figureA)
    roundsB.push(figureB)
    roundRatios.push(round(figureA.requestsPerSecond / figureB.requestsPerSecond, 3))
  }
  const best = (figures: Figure[]) => Math.max(...figures.map((figure) => figure.requestsPerSecond))
  return { medians: [medianOf(roundsA), medianOf(roundsB)], ratio: median(roundRatios), bestOfEachRatio: round(best(roundsA) / best(roundsB), 3), roundRatios }
}

/**
 * A run of a few hundred requests lasts about a second, too short for
 * autocannon's per-second average: with a fixed number of connections each
 * waiting for its answer, the rate is connections / mean latency.
 */
function closedLoop(figure: Figure): Figure {
  return { ...figure, requestsPerSecond: Math.round((PLAN.tokenConnections * 1000) / figure.meanMs) }
}

/** The middle value, or the mean of the two middle ones. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** The median of each figure over the rounds; requests are summed. */
function medianOf(rounds: Figure[]): Figure {
  const of = (key: keyof Figure) => median(rounds.map((figure) => figure[key]))
  return { requestsPerSecond: Math.round(of('requestsPerSecond')), p50Ms: of('p50Ms'), p99Ms: of('p99Ms'), meanMs: round(of('meanMs'), 2), requests: rounds.reduce((sum, figure) => sum + figure.requests, 0) }
}

/** Each request of the run takes the next of `bodies`; the run sends exactly that many. */
function oneEach(bodies: string[]): Pick<Options, 'requests' | 'amount'> {
  let next = 0
  return { amount: bodies.length, requests: [{ setupRequest: (request) => ({ ...request, body: bodies[next++] }) }] }
}

/** The gateway's own timing of its token answers and of the upstream calls inside them, from its /metrics (sums and counts so far). */
async function tokenTimes() {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text()
  const route = { route: '/token', method: 'POST', status: '200' }
  const upstreamCall = { call: 'token (authorization_code)', outcome: 'ok' }
  return {
    routeSeconds: sample(text, 'oauth_gateway_http_request_duration_seconds_sum', route),
    routeCount: sample(text, 'oauth_gateway_http_request_duration_seconds_count', route),
    upstreamSeconds: sample(text, 'oauth_gateway_upstream_request_duration_seconds_sum', upstreamCall),
    upstreamCount: sample(text, 'oauth_gateway_upstream_request_duration_seconds_count', upstreamCall),
  }
}

/** Mean milliseconds per exchange between two readings: the whole /token answer, the upstream call in it, and the rest (the gateway's own work). */
function insideOf(before: Awaited<ReturnType<typeof tokenTimes>>, after: Awaited<ReturnType<typeof tokenTimes>>) {
  const routeMs = ((after.routeSeconds - before.routeSeconds) / (after.routeCount - before.routeCount)) * 1000
  const upstreamMs = ((after.upstreamSeconds - before.upstreamSeconds) / (after.upstreamCount - before.upstreamCount)) * 1000
  return { exchanges: after.routeCount - before.routeCount, routeMeanMs: round(routeMs, 3), upstreamCallMeanMs: round(upstreamMs, 3), ownMeanMs: round(routeMs - upstreamMs, 3) }
}

const note = (line: string) => process.stderr.write(`${line}\n`)

const gatewayPort = await freePort()
const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
const callbackUrl = `${gatewayUrl}/callback`
const upstream = await startUpstreamProcess(callbackUrl)
const gateway = await startGateway(gatewayPort, upstream, MCP_RESOURCE)
const ceiling = await startCeiling(await (await fetch(gatewayUrl + METADATA_PATH)).text())

try {
  note('metadata: gateway and the bare Fastify ceiling')
  const metadataComparison = await compare(PLAN.rounds, { what: 'metadata', options: { url: gatewayUrl + METADATA_PATH } }, { what: 'ceiling', options: { url: ceiling.url + METADATA_PATH } })
  const [metadata, bare] = metadataComparison.medians

  note('registration')
  const registration = await load('registration', { url: `${gatewayUrl}/register`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(CHATGPT_REGISTRATION) })

  note(`token exchange: ${PLAN.tokenRounds} rounds of ${PLAN.codes} codes through the gateway and ${PLAN.codes} straight to the upstream, ${PLAN.tokenConnections} at a time`)
  const client = await registerClient(gatewayUrl, CHATGPT_REGISTRATION)
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const throughGateway = async (count: number) => {
    const codes = await inParallel(count, PLAN.flowWorkers, (browser) => chatGptCode(browser, gatewayUrl, client, upstream.account, MCP_RESOURCE))
    const bodies = codes.map((code) => gatewayTokenBody(client, code))
    return closedLoop(figure(await autocannon({ url: `${gatewayUrl}/token`, method: 'POST', headers: form, connections: PLAN.tokenConnections, ...oneEach(bodies) }), 'token through the gateway'))
  }
  const direct = async (count: number) => {
    const codes = await inParallel(count, PLAN.flowWorkers, (browser) => upstreamCode(browser, upstream, callbackUrl))
    const bodies = codes.map((code) => upstreamTokenBody(code, callbackUrl))
    const headers = { ...form, authorization: upstreamAuthorization(upstream) }
    return closedLoop(figure(await autocannon({ url: `${upstream.issuer}/token`, method: 'POST', headers, connections: PLAN.tokenConnections, ...oneEach(bodies) }), 'token straight to the upstream'))
  }
  // Each batch is minted just before it is spent, and kept small: codes live 60 s, and the stand-in
  // (oidc-provider's memory adapter) keeps only its newest 1,000 entries, codes and tokens alike.
  await throughGateway(PLAN.codes)
  await direct(PLAN.codes)
  const timesBefore = await tokenTimes()
  const gatewayRounds: Figure[] = []
  const directRounds: Figure[] = []
  for (let round = 0; round < PLAN.tokenRounds; round++) {
    gatewayRounds.push(await throughGateway(PLAN.codes))
    directRounds.push(await direct(PLAN.codes))
  }
  const tokenGateway = medianOf(gatewayRounds)
  const tokenDirect = medianOf(directRounds)
  const tokenInside = insideOf(timesBefore, await tokenTimes())

  note(`memory: ${PLAN.warmupFlows} flows to warm up, then ${PLAN.flows} complete flows (authorize, consent remembered, upstream, callback, token)`)
  const completeFlow = async (browser: Parameters<Parameters<typeof inParallel>[2]>[0]) => {
    const code = await chatGptCode(browser, gatewayUrl, client, upstream.account, MCP_RESOURCE)
    const response = await fetch(`${gatewayUrl}/token`, { method: 'POST', headers: form, body: gatewayTokenBody(client, code) })
    if (response.status !== 200) throw new Error(`a flow's token exchange failed: ${response.status} ${await response.text()}`)
    await response.arrayBuffer()
  }
  await inParallel(PLAN.warmupFlows, PLAN.flowWorkers, completeFlow)
  const before = await gateway.liveMemory()
  const started = performance.now()
  await inParallel(PLAN.flows, PLAN.flowWorkers, completeFlow, (done) => done % 10_000 === 0 && note(`  ${done} flows`))
  const flowSeconds = (performance.now() - started) / 1000
  const after = await gateway.liveMemory()

  note(`refresh through the registry: ${PLAN.refreshes} refreshes on the state file, then on Redis`)
  const refresh: { sqlite: RefreshFigures; redis?: RefreshFigures } = { sqlite: await measureRefreshes('sqlite', PLAN.refreshes) }
  try {
    refresh.redis = await measureRefreshes('redis', PLAN.refreshes)
  } catch (err) {
    note(`  Redis skipped: ${(err as Error).message}`)
  }

  const results = {
    date: new Date().toISOString(),
    mode: short ? 'short' : 'full',
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform} ${process.arch}` },
    plan: PLAN,
    figures: { metadata, ceiling: bare, registration, tokenGateway, tokenDirect },
    tokenInside,
    ratios: {
      metadataOfCeiling: round(metadataComparison.ratio, 3),
      metadataOfCeilingPerRound: metadataComparison.roundRatios,
      metadataOfCeilingBestOfEach: metadataComparison.bestOfEachRatio,
      tokenGatewayOfDirect: round(tokenGateway.requestsPerSecond / tokenDirect.requestsPerSecond, 3),
      tokenAddedP50Ms: round(tokenGateway.p50Ms - tokenDirect.p50Ms, 2),
      tokenAddedMeanMs: round(tokenGateway.meanMs - tokenDirect.meanMs, 2),
    },
    memory: {
      flows: PLAN.flows,
      flowsPerSecond: Math.round(PLAN.flows / flowSeconds),
      rssBeforeMiB: mib(before.rss),
      rssAfterMiB: mib(after.rss),
      heapBeforeMiB: mib(before.heapUsed),
      heapAfterMiB: mib(after.heapUsed),
      peakRssMiB: mib(gateway.memory().peak),
      growth: round(after.rss / before.rss - 1, 3),
    },
    refresh,
  }
  const targets = {
    metadataOfCeiling: results.ratios.metadataOfCeiling >= TARGETS.metadataOfCeiling,
    tokenAddedP50Ms: results.ratios.tokenAddedP50Ms <= TARGETS.tokenAddedP50Ms,
    memoryGrowth: results.memory.growth <= TARGETS.memoryGrowth,
    refreshAddedRoundTrips: [refresh.sqlite, refresh.redis].every((figures) => figures === undefined || figures.grantStorageRoundTrips <= TARGETS.refreshAddedRoundTrips),
    refreshRegistryP50Ms: refresh.sqlite.registryP50Ms <= TARGETS.refreshRegistryP50Ms,
  }
  writeFileSync(args.out, `${JSON.stringify({ ...results, targets }, null, 2)}\n`)
  report(results, targets)
  process.exitCode = !short && Object.values(targets).includes(false) ? 1 : 0
} finally {
  await Promise.all([ceiling.stop(), gateway.stop(), upstream.stop()])
}

function report(results: any, targets: Record<keyof typeof TARGETS, boolean>) {
  const { figures, ratios, memory, machine } = results
  const row = (name: string, f: Figure) => `${name.padEnd(34)}${String(f.requestsPerSecond).padStart(9)} req/s   p50 ${String(f.p50Ms).padStart(6)} ms   p99 ${String(f.p99Ms).padStart(6)} ms   mean ${f.meanMs.toFixed(2).padStart(6)} ms`
  const judged = (met: boolean) => (short ? '' : met ? '  (target met)' : '  (TARGET MISSED)')
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node.js ${machine.node}${short ? ' (short run: figures not judged)' : ''}`)
  console.log(row('metadata (gateway)', figures.metadata))
  console.log(row('metadata (bare Fastify ceiling)', figures.ceiling))
  console.log(row('registration', figures.registration))
  console.log(row('token exchange (through gateway)', figures.tokenGateway))
  console.log(row('token exchange (direct upstream)', figures.tokenDirect))
  const perRound = ratios.metadataOfCeilingPerRound.map((ratio: number) => `${(ratio * 100).toFixed(0)}%`).join(' ')
  console.log(`metadata gateway/ceiling: ${(ratios.metadataOfCeiling * 100).toFixed(1)}%, the median of ${ratios.metadataOfCeilingPerRound.length} paired rounds (target >= ${TARGETS.metadataOfCeiling * 100}%)${judged(targets.metadataOfCeiling)}; round by round ${perRound}; best round of each ${(ratios.metadataOfCeilingBestOfEach * 100).toFixed(1)}%`)
  console.log(`token gateway/direct: ${(ratios.tokenGatewayOfDirect * 100).toFixed(1)}% of the requests per second; p50 +${ratios.tokenAddedP50Ms} ms (target <= ${TARGETS.tokenAddedP50Ms} ms)${judged(targets.tokenAddedP50Ms)}, mean +${ratios.tokenAddedMeanMs} ms`)
  const inside = results.tokenInside
  console.log(`token inside the gateway (its own metrics, ${inside.exchanges} exchanges): /token ${inside.routeMeanMs} ms mean, ${inside.upstreamCallMeanMs} ms of it the upstream call, ${inside.ownMeanMs} ms the gateway's own work`)
  console.log(`memory: ${memory.rssBeforeMiB} MiB -> ${memory.rssAfterMiB} MiB live RSS over ${memory.flows} flows (${(memory.growth * 100).toFixed(1)}%, target <= ${TARGETS.memoryGrowth * 100}%), heap ${memory.heapBeforeMiB} -> ${memory.heapAfterMiB} MiB, peak RSS ${memory.peakRssMiB} MiB, ${memory.flowsPerSecond} flows/s${judged(targets.memoryGrowth)}`)
  for (const figures of [results.refresh.sqlite, results.refresh.redis].filter(Boolean)) console.log(refreshLine(figures))
  console.log(`refresh added by the registry: at most ${TARGETS.refreshAddedRoundTrips} round trips${judged(targets.refreshAddedRoundTrips)}, p50 on the state file <= ${TARGETS.refreshRegistryP50Ms} ms${judged(targets.refreshRegistryP50Ms)}`)
  console.log(`written to ${args.out}`)
}

function round(value: number, digits: number) {
  return Number(value.toFixed(digits))
}

function mib(bytes: number) {
  return round(bytes / 2 ** 20, 1)
}
