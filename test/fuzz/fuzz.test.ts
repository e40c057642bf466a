/**
 * Property-based fuzzing against the running gateway over real HTTP, in front
 * of the real oidc-provider stand-in: 5,000 generated requests for every
 * endpoint (see requests.ts for what is generated and which rules every answer
 * must keep). FUZZ_SEED reproduces a run; `npm run fuzz` is the long run.
 */
import t from 'tap'
import { fuzzRequests, prepareContext, runFuzz, seedFromEnvironment } from './harness.ts'
import { startStack } from '../support/stack.ts'
import type { Endpoint } from './requests.ts'

const REQUESTS = 5_000
/** The gateway process's peak resident memory must stay under this (it idles at about 100 MiB). */
const MEMORY_BOUND_BYTES = 256 * 1024 * 1024
/** Live heap (after a full GC) may grow this much from a tenth of the run to its end; a leak of a few hundred bytes a request would exceed it. */
const LIVE_HEAP_GROWTH_BOUND_BYTES = 8 * 1024 * 1024
const ENDPOINTS: Endpoint[] = ['metadata', 'protected-resource', 'register', 'authorize', 'consent', 'callback', 'token', 'revoke', 'health', 'unknown']

t.test(`${REQUESTS} generated requests against the gateway process`, async (t) => {
  const seed = seedFromEnvironment()
  t.comment(`seed ${seed} (FUZZ_SEED=${seed} reproduces this run)`)
  const report = await runFuzz({ requests: REQUESTS, seed, concurrency: 8, every: 500 })
  t.comment(`${report.requests} requests in ${(report.durationMs / 1000).toFixed(1)} s; gateway peak RSS ${(report.gateway.peakRssBytes / 2 ** 20).toFixed(0)} MiB`)
  t.same(report.failures, [], 'every answer kept its shape')
  t.ok(report.requests >= REQUESTS, `all ${REQUESTS} requests were sent and answered`)
  t.same([...report.endpoints].sort(), [...ENDPOINTS].sort(), 'every endpoint was fuzzed')
  t.ok(report.gateway.alive, 'the gateway process is alive and answers /healthz')
  t.same(report.gateway.crashes, [], 'no unhandled rejection, uncaught exception or fatal error was logged')
  t.ok(report.gateway.peakRssBytes < MEMORY_BOUND_BYTES, `peak memory ${report.gateway.peakRssBytes} bytes stays under ${MEMORY_BOUND_BYTES}`)
  t.ok(report.gateway.liveHeapGrowthBytes < LIVE_HEAP_GROWTH_BOUND_BYTES, `the live heap stays flat: it grew ${report.gateway.liveHeapGrowthBytes} bytes after warm-up`)
  t.ok(report.outcomes['token 200'], 'some requests got as far as a real token exchange')
  t.ok(report.outcomes['register 201'], 'some registrations succeeded')
  t.ok(report.outcomes['authorize 302'], 'some authorizations went on to the upstream')
  t.ok(report.outcomes['consent 303'], 'some consent answers were genuine approvals and went on to the upstream')
  t.ok(report.outcomes['consent 400'], 'and replayed, forged or cross-site ones were refused')
})

t.test('no generated request pollutes Object.prototype in the gateway', async (t) => {
  // As in the process run: the fuzzer's clients skip the consent page, so it can harvest real sealed states.
  const trusted = ['https://chatgpt.com/connector/oauth/*', 'https://claude.ai/api/mcp/auth_callback']
  const stack = await startStack({ config: (file) => ({ ...file, consent: { trustedRedirectUris: trusted } }) })
  t.teardown(() => stack.close())
  const before = Object.getOwnPropertyNames(Object.prototype).sort()
  const context = await prepareContext(stack.gatewayUrl, stack.upstream, stack.mcp.url)
  const stats = await fuzzRequests(stack.gatewayUrl, context, { requests: 1_000, seed: seedFromEnvironment(), concurrency: 4 })
  t.same(stats.failures, [], 'every answer kept its shape')
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), before, 'Object.prototype has no new properties')
  t.equal(({} as Record<string, unknown>).fz_polluted, undefined, 'no object inherits a polluted property')
})
