/**
 * node test/bench/instructions.ts [--requests N] [--warmup N]
 *
 * Instructions per metadata answer, in the gateway and in the bare Fastify
 * ceiling, counted by valgrind's callgrind over N requests after a warm-up
 * (the count is switched on only for the measured requests). On a shared
 * machine requests per second move by 20% from one run to the next; this
 * count moves by 1% between runs close in time (up to 5% over a day), so a
 * change worth several percent shows when the counts are taken together. It
 * counts user space only: the kernel's work (the socket writes, about a
 * third of the CPU time here) is not in it. Needs valgrind; not part of the
 * tests.
 */
import autocannon from 'autocannon'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort } from '../support/ports.ts'
import { MCP_RESOURCE, METADATA_PATH, startCeiling, startGateway, startUpstreamProcess, type Started } from './processes.ts'

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '10000' }, warmup: { type: 'string', default: '20000' } } })
const requests = Number(args.requests)
const warmup = Number(args.warmup)
const dir = mkdtempSync(join(tmpdir(), 'instructions-'))

/** valgrind running node under callgrind, counting nothing until told to. */
function callgrind(name: string): string[] {
  return ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--vgdb-prefix=${join(dir, name)}`, `--callgrind-out-file=${join(dir, name)}.out`]
}

/**
 * Tells the callgrind run `name` to switch counting on or off, or to write its
 * counts. `env` is the measured process's environment: valgrind names its
 * control pipe after the USER and HOST variables there.
 */
function control(name: string, pid: number, env: NodeJS.ProcessEnv, action: string) {
  execFileSync('callgrind_control', [`--vgdb-prefix=${join(dir, name)}`, action, String(pid)], { env, stdio: 'ignore' })
}

async function count(name: string, server: Pick<Started, 'url' | 'child'> & { stop(): Promise<unknown> }, env: NodeJS.ProcessEnv): Promise<number> {
  const url = server.url + METADATA_PATH
  const pid = server.child.pid!
  await autocannon({ url, amount: warmup, connections: 10 })
  control(name, pid, env, '--instr=on')
  const result = await autocannon({ url, amount: requests, connections: 10 })
  control(name, pid, env, '--instr=off')
  control(name, pid, env, '--dump')
  if (result.non2xx + result.errors + result.timeouts > 0) throw new Error(`${name}: ${result.non2xx} error answers, ${result.errors} errors, ${result.timeouts} timeouts`)
  await server.stop()
  // One file per dump; the counts are in its `totals:` line.
  const totals = readdirSync(dir)
    .filter((file) => file.startsWith(`${name}.out`))
    .map((file) => Number(/^totals: (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'))?.[1] ?? 0))
  return totals.reduce((sum, total) => sum + total, 0) / result.requests.total
}

const gatewayPort = await freePort()
const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
const upstream = await startUpstreamProcess(`${gatewayUrl}/callback`)
try {
  const gateway = await startGateway(gatewayPort, upstream, MCP_RESOURCE, callgrind('gateway'))
  const body = await (await fetch(gatewayUrl + METADATA_PATH)).text()
  const gatewayInstructions = await count('gateway', gateway, gateway.env)
  const ceilingInstructions = await count('ceiling', await startCeiling(body, callgrind('ceiling')), process.env)
  const thousands = (value: number) => `${(value / 1000).toFixed(1)}k`
  console.log(`instructions per metadata answer, over ${requests} after ${warmup} to warm up:`)
  console.log(`  gateway ${thousands(gatewayInstructions)}, bare Fastify ceiling ${thousands(ceilingInstructions)}: the ceiling's count is ${((ceilingInstructions / gatewayInstructions) * 100).toFixed(1)}% of the gateway's`)
} finally {
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
}
