/**
 * `node gateway/doctor/main.ts` as ops run it: a real process, reading a
 * configuration file and the environment, checking a real deployment over
 * HTTP (the oidc-provider upstream, the gateway, the SDK's MCP server). A
 * healthy deployment passes every check; each broken one fails the check that
 * names the problem, with its fix, and the exit code says so.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CheckResult } from '../../gateway/doctor/checks.ts'
import { closeServer, listen } from '../support/http.ts'
import { freePort } from '../support/ports.ts'
import { gatewayFile, startStack, type Stack, type StackOptions } from '../support/stack.ts'

const ALL_PRESETS = { chatgpt: true, claude: true, loopback: true, vscodeWeb: true, cursor: true, inspector: true }

// Each test starts a stack and runs the doctor as a process, some twice: minutes on a loaded machine.
t.setTimeout(300_000)

const dir = mkdtempSync(join(tmpdir(), 'doctor-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

interface DoctorRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the doctor with `file` as GATEWAY_CONFIG (JSON is YAML) and only the environment given. */
function doctor(file: Record<string, unknown> | undefined, args: string[] = [], env: Record<string, string> = {}): Promise<DoctorRun> {
  const configPath = join(dir, `gateway-${Math.random().toString(36).slice(2)}.yaml`)
  if (file) writeFileSync(configPath, JSON.stringify(file))
  const child = spawn(process.execPath, ['gateway/doctor/main.ts', ...args], {
    env: { PATH: process.env.PATH ?? '', GATEWAY_CONFIG: configPath, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

/** The config file of a stack's gateway, as the doctor reads it. */
function fileOf(stack: Stack, changes: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...gatewayFile(stack.gatewayUrl, stack.upstream.issuer, stack.mcpUrl), ...changes }
}

async function stack(t: Test, options: StackOptions = {}) {
  const started = await startStack(options)
  t.teardown(() => started.close())
  return started
}

/** The printed line of a check, with its fix line when it has one. */
function lineOf(run: DoctorRun, status: string, name: string): string {
  const lines = run.stdout.split('\n')
  const i = lines.findIndex((line) => line.startsWith(`${status} ${name}:`))
  if (i < 0) return ''
  return lines[i + 1]?.startsWith('     fix: ') ? `${lines[i]}\n${lines[i + 1]}` : lines[i]!
}

const failures = (run: DoctorRun) => run.stdout.split('\n').filter((line) => line.startsWith('FAIL ')).map((line) => line.slice(5, line.indexOf(':')))

t.test('a healthy deployment: every check passes, exit 0', async (t) => {
  const healthy = await stack(t, { config: (file) => ({ ...file, redirectPresets: ALL_PRESETS }) })
  const file = fileOf(healthy, { redirectPresets: ALL_PRESETS })
  const run = await doctor(file)
  t.equal(run.code, 0, run.stdout + run.stderr)
  t.same(failures(run), [], 'nothing fails')
  for (const name of [
    'upstream discovery', 'upstream PKCE S256', 'grant identity source', 'grant upstream revocation', 'upstream authorization endpoint', 'upstream token endpoint', 'upstream revocation endpoint',
    'gateway metadata', 'gateway issuer', 'gateway endpoints', 'gateway PKCE S256', 'gateway CORS', 'gateway CORS preflight /token', 'gateway CORS preflight /register',
    'gateway protected resource metadata', 'MCP server challenge', 'protected resource metadata for the MCP URL',
    'redirect URI (chatgpt preset)', 'redirect URI (claude preset)', 'redirect URI (loopback preset)', 'redirect URI (vscodeWeb preset)', 'redirect URI (cursor preset)', 'redirect URI (inspector preset)',
    'connector flow (register)', 'connector flow (authorize)', 'connector flow (consent)', 'connector flow (upstream sign-in page)',
  ]) {
    t.ok(lineOf(run, 'PASS', name), `PASS ${name}`)
  }
  t.match(lineOf(run, 'PASS', 'connector flow (upstream sign-in page)'), `200 text/html at ${healthy.upstream.issuer}/interaction/`, 'reached the sign-in page without signing in')
  t.match(lineOf(run, 'PASS', 'grant identity source'), "the ID token's claim sub (the upstream is OpenID; name and email from userinfo", 'names where users come from')
  t.equal(healthy.upstream.requests.filter((request) => request.path === '/token' && request.status === 200).length, 0, 'no token was ever issued')
  t.match(run.stdout, /^\d+ passed, 0 failed, 0 warnings, 0 skipped$/m)

  const json = await doctor(file, ['--json'])
  const report = JSON.parse(json.stdout) as { ok: boolean; results: CheckResult[] }
  t.equal(json.code, 0)
  t.equal(report.ok, true)
  t.ok(report.results.length >= 25, 'one result per check')
  t.same(report.results.filter((result) => result.status !== 'pass'), [], 'all pass')
  t.notMatch(json.stdout + run.stdout, /gateway-client-secret|test-gateway-secret/, 'no secret anywhere')
})

t.test('a healthy deployment in front mode, with a client\'s own redirect URI', async (t) => {
  const front = await stack(t, { front: true })
  const run = await doctor({ ...fileOf(front), front: { enabled: true, mcpUpstream: front.mcp.url } }, ['--redirect-uri', 'https://claude.ai/api/mcp/auth_callback'])
  t.equal(run.code, 0, run.stdout + run.stderr)
  t.same(failures(run), [])
  t.ok(lineOf(run, 'PASS', 'gateway CORS preflight MCP'), 'the MCP endpoint\'s preflight, answered by the gateway')
  t.match(lineOf(run, 'PASS', 'MCP server challenge'), `resource_metadata="${front.gatewayUrl}/.well-known/oauth-protected-resource/mcp"`)
  t.match(lineOf(run, 'PASS', 'connector flow (register)'), 'client for https://claude.ai/api/mcp/auth_callback', 'the flow uses the redirect URI asked for')
})

t.test('a redirect URI the gateway does not allow', async (t) => {
  // The running gateway has the stack's allowlist only; the doctor expects the cursor preset too, and a client's URI.
  const running = await stack(t)
  const run = await doctor(fileOf(running, { redirectPresets: { cursor: true } }), ['--redirect-uri', 'https://evil.example/callback'])
  t.equal(run.code, 1)
  t.same(failures(run), ['redirect URI (--redirect-uri)', 'redirect URI (cursor preset)'], 'exactly these checks fail')
  const cursor = lineOf(run, 'FAIL', 'redirect URI (cursor preset)')
  t.match(cursor, 'cursor://anysphere.cursor-mcp/oauth/callback refused: invalid_redirect_uri')
  t.match(cursor, 'fix: switch on redirectPresets.cursor in the configuration file of every gateway replica and restart them')
  const own = lineOf(run, 'FAIL', 'redirect URI (--redirect-uri)')
  t.match(own, 'https://evil.example/callback refused: invalid_redirect_uri')
  t.match(own, 'fix: add it, or a pattern that covers it, to allowedRedirectUris (or ALLOWED_REDIRECT_URIS)')
  t.match(lineOf(run, 'PASS', 'connector flow (register)'), 'client for https://chatgpt.com/connector/oauth/doctor-check', 'the flow goes on with an accepted URI')
  t.ok(lineOf(run, 'PASS', 'connector flow (upstream sign-in page)'))

  const switchedOff = await doctor(fileOf(running), ['--redirect-uri', 'https://vscode.dev/redirect'])
  t.match(lineOf(switchedOff, 'FAIL', 'redirect URI (--redirect-uri)'), 'fix: switch on redirectPresets.vscodeWeb', 'a URI of a switched-off preset names the preset')
})

t.test('an unreachable upstream', async (t) => {
  const running = await stack(t)
  const closedPort = await freePort()
  const run = await doctor(fileOf(running), [], { UPSTREAM_ISSUER: `http://127.0.0.1:${closedPort}` })
  t.equal(run.code, 1)
  const line = lineOf(run, 'FAIL', 'upstream discovery')
  t.match(line, `upstream unreachable: connection refused (http://127.0.0.1:${closedPort}/.well-known/oauth-authorization-server)`)
  t.match(line, `fix: this host cannot reach http://127.0.0.1:${closedPort}: check upstream.issuer (UPSTREAM_ISSUER)`)
  t.same(failures(run), ['upstream discovery'], 'the running gateway still reaches its own upstream')
})

t.test('the upstream goes down under a running gateway', async (t) => {
  const running = await stack(t, { faultProxy: true })
  await running.proxy!.refuse()
  const run = await doctor(fileOf(running))
  t.equal(run.code, 1)
  t.match(lineOf(run, 'FAIL', 'upstream discovery'), 'upstream unreachable: connection refused')
  const flow = lineOf(run, 'FAIL', 'connector flow (authorize)')
  t.match(flow, 'the gateway sent the client an error: temporarily_unavailable: the NeonPanel sign-in service cannot be reached', 'as the client would hear it')
  t.match(flow, 'fix: the gateway could not go on: the upstream checks above')
  t.same(failures(run), ['upstream discovery', 'connector flow (authorize)'])
})

t.test('an upstream client that does not know the gateway\'s callback', async (t) => {
  const running = await stack(t, { upstream: { redirectUris: ['https://oauth.example.com/callback'] } })
  const run = await doctor(fileOf(running))
  t.equal(run.code, 1)
  t.same(failures(run), ['connector flow (upstream sign-in page)'])
  const line = lineOf(run, 'FAIL', 'connector flow (upstream sign-in page)')
  t.match(line, /400 text\/html at http:\/\/127\.0\.0\.1:\d+\/auth: .*redirect_uri/, 'the upstream\'s error page, in words')
  t.match(line, `fix: the upstream refused the gateway's authorization request: check that ${running.gatewayUrl}/callback is a registered redirect URI of the upstream client neonpanel-mcp-gateway (UPSTREAM_CLIENT_ID)`)
})

t.test('an upstream without a revocation endpoint, users from introspection', async (t) => {
  const running = await stack(t, { upstream: { revocation: false } })
  const run = await doctor(fileOf(running, { upstream: { issuer: running.upstream.issuer, clientId: 'neonpanel-mcp-gateway', identitySource: 'introspection', userClaim: 'sub' } }))
  t.same(failures(run), [], 'nothing fails')
  t.match(lineOf(run, 'PASS', 'grant identity source'), `token introspection at ${running.upstream.issuer}/token/introspection, claim sub`)
  t.match(lineOf(run, 'WARN', 'grant upstream revocation'), "the upstream names no revocation_endpoint\n     fix: ending a grant stops it at the gateway, but its upstream refresh token stays valid")
  const none = await doctor(fileOf(running, { upstream: { issuer: running.upstream.issuer, clientId: 'neonpanel-mcp-gateway', identitySource: 'none' } }))
  t.match(lineOf(none, 'PASS', 'grant identity source'), 'none (upstream.identitySource: none): grants carry no user')
})

t.test('an issuer that is not the public URL', async (t) => {
  // The gateway was started with another spelling of its address than clients use.
  const running = await stack(t, { config: (file) => ({ ...file, publicUrl: file.publicUrl.replace('127.0.0.1', 'localhost') }) })
  const run = await doctor(fileOf(running))
  t.equal(run.code, 1)
  const line = lineOf(run, 'FAIL', 'gateway issuer')
  const localhost = running.gatewayUrl.replace('127.0.0.1', 'localhost')
  t.match(line, `the gateway at ${running.gatewayUrl} says its issuer is "${localhost}"`)
  t.match(line, `fix: set publicUrl (GATEWAY_PUBLIC_URL) of every gateway replica to exactly the URL clients use, ${running.gatewayUrl}`)
  t.match(lineOf(run, 'FAIL', 'gateway endpoints'), `token_endpoint is ${localhost}/token`)
})

t.test('CORS headers dropped by a proxy in front of the gateway', async (t) => {
  const proxy = await startCorsStrippingProxy()
  t.teardown(() => proxy.close())
  const running = await stack(t, {
    config: (file) => ({ ...file, publicUrl: proxy.url }),
    upstream: { redirectUris: [`${proxy.url}/callback`] },
  })
  proxy.setTarget(running.gatewayUrl)
  const run = await doctor({ ...fileOf(running), publicUrl: proxy.url })
  t.equal(run.code, 1)
  t.same(failures(run), ['gateway CORS', 'gateway CORS preflight /token', 'gateway CORS preflight /register'], 'only CORS fails; the flow goes through the proxy')
  t.match(lineOf(run, 'FAIL', 'gateway CORS'), 'with Origin https://mcp-client.example answers Access-Control-Allow-Origin null')
  const preflight = lineOf(run, 'FAIL', 'gateway CORS preflight /token')
  t.match(preflight, `OPTIONS ${proxy.url}/token answers Access-Control-Allow-Origin null, POST not in Access-Control-Allow-Methods, authorization, content-type not in Access-Control-Allow-Headers`)
  t.match(preflight, 'fix: the gateway answers CORS itself: make the ingress or proxy in front of it pass OPTIONS requests through (not answer them, nor ask for authentication) and keep the Access-Control-* response headers')
})

t.test('a run the gateway\'s rate limit stops', async (t) => {
  const limits = { register: { perIp: { max: 2, windowSeconds: 60 } } }
  const running = await stack(t, { config: (file) => ({ ...file, limits }) })
  const run = await doctor(fileOf(running, { limits }))
  t.equal(run.code, 1)
  t.same(failures(run), ['redirect URI (allowedRedirectUris)', 'connector flow (register)'], 'the third registration and the flow\'s')
  t.match(lineOf(run, 'FAIL', 'redirect URI (allowedRedirectUris)'), /http:\/\/127\.0\.0\.1\/callback: registration answers temporarily_unavailable: .*\n     fix: the gateway's rate limit \(limits in its configuration\) stopped this request: run the doctor again in \d+ s/)
})

t.test('bad usage and bad configuration exit 2', async (t) => {
  const nowhere = { gatewayUrl: 'http://127.0.0.1:1', upstream: { issuer: 'http://127.0.0.1:2' }, mcpUrl: 'http://127.0.0.1:3/mcp' } as Stack
  const [unknown, missing, insecure, help] = await Promise.all([
    doctor(undefined, ['--bogus']),
    doctor(undefined),
    doctor(fileOf(nowhere), ['--gateway', 'http://gateway.example']),
    doctor(undefined, ['--help']),
  ])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, "Unknown option '--bogus'")
  t.equal(missing.code, 2)
  t.match(missing.stderr, 'cannot read the configuration file')
  t.equal(insecure.code, 2)
  t.match(insecure.stderr, 'publicUrl: must be https')
  t.equal(help.code, 0)
  t.match(help.stdout, '--redirect-uri URI')
})

/** A misconfigured ingress: passes everything to the gateway and drops every Access-Control-* response header. */
async function startCorsStrippingProxy() {
  let target = ''
  const server = createServer((req, res) => {
    const forwarded = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      const headers = Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !name.startsWith('access-control-')))
      res.writeHead(answer.statusCode ?? 502, headers)
      answer.pipe(res)
    })
    forwarded.on('error', () => res.destroy())
    req.pipe(forwarded)
  })
  const port = await listen(server, 0, '127.0.0.1')
  return {
    url: `http://127.0.0.1:${port}`,
    setTarget(origin: string) {
      target = origin
    },
    close: () => closeServer(server),
  }
}
