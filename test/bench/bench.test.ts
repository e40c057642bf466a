/**
 * `npm run bench` in its short mode: the whole benchmark runs (the gateway,
 * the stand-in upstream and the bare Fastify ceiling as processes of their
 * own, every measurement, the flows for the memory figure), prints its
 * figures and writes them as JSON. The figures themselves are not asserted:
 * they measure the machine as much as the gateway.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

// The whole short benchmark, gateway and upstream processes and the refresh through the registry on SQLite and Redis.
t.setTimeout(300_000)

const dir = mkdtempSync(join(tmpdir(), 'bench-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('the benchmark runs end to end and reports every figure', async (t) => {
  const out = join(dir, 'results.json')
  const child = spawn(process.execPath, ['test/bench/bench.ts', '--short', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, `exit 0; stderr: ${stderr.slice(-2000)}`)
  for (const label of ['metadata (gateway)', 'metadata (bare Fastify ceiling)', 'registration', 'token exchange (through gateway)', 'token exchange (direct upstream)']) {
    t.match(stdout, new RegExp(`^${label.replace(/[()]/g, '\\$&')}\\s+\\d+ req/s\\s+p50\\s+[\\d.]+ ms\\s+p99\\s+[\\d.]+ ms\\s+mean\\s+[\\d.]+ ms$`, 'm'), `${label} is printed`)
  }
  t.match(stdout, /^metadata gateway\/ceiling: [\d.]+%, the median of 2 paired rounds .*; round by round \d+% \d+%; best round of each [\d.]+%$/m, 'the ratio to the ceiling, round by round, and of the best rounds')
  t.match(stdout, /^token gateway\/direct: [\d.]+% of the requests per second; p50 \+-?[\d.]+ ms/m, 'the ratio to going direct')
  t.match(stdout, /^token inside the gateway \(its own metrics, 100 exchanges\): \/token [\d.]+ ms mean, [\d.]+ ms of it the upstream call, -?[\d.]+ ms the gateway's own work$/m, 'the token answer split by the gateway\'s own metrics')
  t.match(stdout, /^memory: [\d.]+ MiB -> [\d.]+ MiB live RSS over 300 flows/m, 'the memory over completed flows')
  t.match(stdout, /^refresh through the registry \(sqlite, 50 refreshes\): [\d.]+ store round trips per refresh, [\d.]+ single flight \+ [\d.]+ grant storage \(.*\); registry p50 [\d.]+ ms, p99 [\d.]+ ms$/m, 'the refresh through the registry on the state file')

  const results = JSON.parse(readFileSync(out, 'utf8'))
  t.equal(results.mode, 'short')
  const { metadataOfCeiling, metadataOfCeilingPerRound } = results.ratios
  t.equal(metadataOfCeilingPerRound.length, results.plan.rounds, 'a ratio for each round')
  t.equal(metadataOfCeiling, Number(((metadataOfCeilingPerRound[0] + metadataOfCeilingPerRound[1]) / 2).toFixed(3)), 'the ratio judged is the median of the rounds\' ratios')
  for (const name of ['metadata', 'ceiling', 'registration', 'tokenGateway', 'tokenDirect']) {
    const figure = results.figures[name]
    t.ok(figure.requestsPerSecond > 0 && figure.requests > 0, `${name}: requests were answered`)
    t.ok(Number.isFinite(figure.p50Ms) && Number.isFinite(figure.p99Ms) && figure.p99Ms >= figure.p50Ms, `${name}: latencies`)
  }
  t.equal(results.figures.tokenGateway.requests, 100, 'each minted code was exchanged once, through the gateway')
  t.equal(results.figures.tokenDirect.requests, 100, 'and straight at the upstream')
  const inside = results.tokenInside
  t.equal(inside.exchanges, 100, 'the gateway counted the measured exchanges, and only those')
  t.ok(inside.upstreamCallMeanMs > 0 && inside.upstreamCallMeanMs < inside.routeMeanMs, `the upstream call (${inside.upstreamCallMeanMs} ms) is part of the answer (${inside.routeMeanMs} ms)`)
  t.ok(results.memory.rssBeforeMiB > 0 && results.memory.rssAfterMiB > 0, 'memory was read from the gateway process')
  const refresh = results.refresh.sqlite
  t.equal(refresh.refreshes, 50)
  t.equal(refresh.grantStorageRoundTrips, 2, 'a refresh reads and writes its grant: two round trips')
  t.equal(refresh.roundTrips, refresh.storeRoundTrips + refresh.grantStorageRoundTrips)
  t.same(refresh.grantStorageCalls, { getGrant: 1, updateGrant: 1 })
  for (const target of ['metadataOfCeiling', 'tokenAddedP50Ms', 'memoryGrowth', 'refreshAddedRoundTrips', 'refreshRegistryP50Ms']) t.type(results.targets[target], 'boolean', `${target} is judged in the file`)
})
