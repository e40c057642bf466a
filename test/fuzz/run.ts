/**
 * `npm run fuzz`: the long fuzz run. FUZZ_REQUESTS (default 100,000) generated
 * requests against the gateway process in front of the oidc-provider
 * stand-in; FUZZ_SEED reproduces a run (the seed is printed first);
 * FUZZ_CONCURRENCY requests in flight (default 8). Prints the requests, the
 * duration and the peak memory, and exits 1 when any rule was broken.
 */
import { cpus } from 'node:os'
import { runFuzz, seedFromEnvironment } from './harness.ts'

const requests = Number(process.env.FUZZ_REQUESTS ?? 100_000)
const concurrency = Number(process.env.FUZZ_CONCURRENCY ?? 8)
const seed = seedFromEnvironment()
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

console.log(`fuzz: ${requests} requests, seed ${seed} (FUZZ_SEED=${seed} reproduces this run), ${concurrency} in flight, ${cpus().length} cores`)
const started = performance.now()
const report = await runFuzz({
  requests,
  seed,
  concurrency,
  every: 10_000,
  progress: (sent) => console.log(`  ${sent} requests, ${((performance.now() - started) / 1000).toFixed(0)} s`),
})

console.log(`requests:          ${report.requests} (${report.unsendable} more could not be sent by the HTTP client)`)
console.log(`duration:          ${(report.durationMs / 1000).toFixed(1)} s (${Math.round(report.requests / (report.durationMs / 1000))} requests/s)`)
console.log(`gateway peak RSS:  ${mib(report.gateway.peakRssBytes)} (at the end: ${mib(report.gateway.rssBytes)})`)
console.log(`gateway live heap: ${report.gateway.liveHeap.map((entry) => `${entry.after}: ${mib(entry.heapUsedBytes)}`).join(', ')}`)
console.log(`                   grew ${mib(report.gateway.liveHeapGrowthBytes)} from a tenth of the run to the end`)
console.log(`fuzzer peak RSS:   ${mib(report.fuzzerPeakRssBytes)} (generator and upstream stand-in)`)
console.log(`statuses:          ${JSON.stringify(report.statuses)}`)
console.log(`endpoints:         ${JSON.stringify(report.byEndpoint)}`)
console.log('outcomes:')
for (const [outcome, count] of Object.entries(report.outcomes).sort(([a], [b]) => a.localeCompare(b))) console.log(`  ${String(count).padStart(7)}  ${outcome}`)
console.log(`5xx logged:        ${JSON.stringify(report.gateway.errorsLogged)}`)
console.log(`gateway alive:     ${report.gateway.alive}`)
const broken = report.failures.length > 0 || report.gateway.crashes.length > 0 || !report.gateway.alive
for (const crash of report.gateway.crashes) console.log(`crash logged:      ${JSON.stringify(crash)}`)
for (const failure of report.failures) console.log(`\nFAILED ${failure}`)
console.log(broken ? `\nfuzz: rules broken (seed ${seed})` : '\nfuzz: every answer kept its shape')
process.exit(broken ? 1 : 0)
