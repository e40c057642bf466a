/**
 * `npm run doctor` (`node gateway/doctor/main.ts`): checks a deployment from the
 * outside, over HTTP, as MCP clients and browsers meet it. It reads the
 * configuration the gateway reads (GATEWAY_CONFIG and the environment, no
 * secrets), prints a PASS/FAIL line per check with the fix for each failure
 * (doctor/checks.ts does the checking), and exits 0 when nothing failed, 1
 * when a check failed, 2 for bad usage or configuration.
 */
import { isAbsolute, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError, configPath, loadSettings, redisConnection } from '../config/load.ts'
import type { Settings } from '../config/schema.ts'
import { runChecks } from './checks.ts'
import { formatResult, summarise } from './report.ts'

const USAGE = `Usage: node gateway/doctor/main.ts [options]   (npm run doctor -- [options])

Checks the deployment the gateway's configuration describes, from the outside:
the upstream's discovery, endpoints and PKCE S256; the gateway's metadata
(issuer, endpoints, PKCE), CORS and preflights; the protected resource metadata
for the MCP URL; every enabled preset's redirect URI; and a scripted connector
flow up to the upstream's sign-in page (no sign-in). No secret is needed
(beyond Redis's own password, to check Redis).

It reads GATEWAY_CONFIG (default config/gateway.yaml) and the environment
variables the gateway reads (GATEWAY_PUBLIC_URL, MCP_RESOURCE, UPSTREAM_ISSUER,
ALLOWED_REDIRECT_URIS, ...). With REDIS_URL, REDIS_SENTINELS or
REDIS_CLUSTER_NODES (and their passwords) it also checks Redis: the mode, the
master, replication against redis.waitReplicas, and AOF persistence.
Options override them:

  --config FILE        the configuration file (instead of GATEWAY_CONFIG)
  --gateway URL        the gateway's public URL, its issuer (publicUrl)
  --mcp URL            the MCP server URL clients use (mcpResource)
  --upstream URL       the upstream's issuer (upstream.issuer)
  --redirect-uri URI   also check this client's redirect URI; repeatable.
                       The connector flow then uses it.
  --timeout MS         deadline of each request (default 10000)
  --json               print the results as one JSON document
  -h, --help           this text

Exit code: 0 every check passed (warnings allowed), 1 a check failed,
2 bad usage or configuration.`

const OPTIONS = {
  config: { type: 'string' },
  gateway: { type: 'string' },
  mcp: { type: 'string' },
  upstream: { type: 'string' },
  'redirect-uri': { type: 'string', multiple: true },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

function usageError(message: string): never {
  process.stderr.write(`${message}\n\nnode gateway/doctor/main.ts --help lists the options.\n`)
  process.exit(2)
}

let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values']
try {
  values = parseArgs({ options: OPTIONS, strict: true, allowPositionals: false }).values
} catch (err) {
  usageError((err as Error).message)
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}

const timeoutMs = Number(values.timeout ?? 10_000)
if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 120_000) usageError('--timeout must be a whole number of milliseconds from 100 to 120000')

const env: NodeJS.ProcessEnv = {
  ...process.env,
  ...(values.config === undefined ? {} : { GATEWAY_CONFIG: values.config }),
  ...(values.gateway === undefined ? {} : { GATEWAY_PUBLIC_URL: values.gateway }),
  ...(values.mcp === undefined ? {} : { MCP_RESOURCE: values.mcp }),
  ...(values.upstream === undefined ? {} : { UPSTREAM_ISSUER: values.upstream }),
}

let settings: Settings
try {
  settings = loadSettings(env)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(2)
}
const redis = redisConnection(env)
if (redis.problems.length) {
  process.stderr.write(`invalid configuration (environment):\n${redis.problems.map((problem) => `  ${problem}`).join('\n')}\n`)
  process.exit(2)
}

if (!values.json) {
  const path = relative(process.cwd(), configPath(env))
  const shown = path.startsWith('..') || isAbsolute(path) ? configPath(env) : path
  process.stdout.write(`Checking the gateway at ${settings.publicUrl} for ${settings.mcpResource}, upstream ${settings.upstream.issuer} (configuration ${shown})\n`)
}
const results = await runChecks({
  settings,
  redis: redis.connection,
  redirectUris: values['redirect-uri'],
  timeoutMs,
  onResult: values.json ? undefined : (result) => process.stdout.write(`${formatResult(result)}\n`),
})
const ok = !results.some((result) => result.status === 'fail')
process.stdout.write(values.json ? `${JSON.stringify({ ok, results }, null, 2)}\n` : `${summarise(results)}\n`)
process.exitCode = ok ? 0 : 1
