/**
 * `npm run admin` against a real gateway process (`node gateway/server.ts`
 * with ADMIN_TOKEN, grants in its own SQLite state file) in front of the oidc-provider
 * upstream: tables by default, --json, every verb, and clear messages with
 * exit codes 1 (the gateway refused or is unreachable) and 2 (bad usage).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ADMIN_TOKEN } from '../support/admin.ts'
import { startGatewayProcess } from '../support/gateway-process.ts'
import { freePort } from '../support/ports.ts'
import { exchangeCode, obtainCode, postForm, registerClient } from '../support/flow.ts'
import { gatewayFile, TEST_SECRET, type Stack } from '../support/stack.ts'
import { startUpstream } from '../support/upstream.ts'

// Each run of the command is a process start (a second or two on a loaded machine), and there are some fifty.
t.setTimeout(300_000)

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const port = await freePort()
const gatewayUrl = `http://127.0.0.1:${port}`
const upstream = await startUpstream({ redirectUris: [`${gatewayUrl}/callback`] })
const MCP_RESOURCE = 'http://127.0.0.1:3001/mcp'
// Grants in a state file of the process's own (gateway-process.ts).
const file = gatewayFile(gatewayUrl, upstream.issuer, MCP_RESOURCE)
const gateway = await startGatewayProcess({ config: file, port, env: { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: upstream.clientSecret, ADMIN_TOKEN } })
t.teardown(async () => {
  await gateway.stop()
  await upstream.close()
})

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** The CLI as ops run it, with GATEWAY_URL and ADMIN_TOKEN in its environment. */
function cli(args: string[], env: Record<string, string | undefined> = {}, command: [string, string[]] = [process.execPath, ['gateway/admin/cli.ts']]): Promise<Run> {
  const environment: Record<string, string> = {}
  for (const [name, value] of Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, GATEWAY_URL: gatewayUrl, ADMIN_TOKEN, ...env })) if (value !== undefined) environment[name] = value
  return new Promise((resolve) => {
    execFile(command[0], [...command[1], ...args], { cwd: ROOT, env: environment, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

async function register(name: string, redirectUri = 'https://chatgpt.com/connector/oauth/cli') {
  const response = await fetch(`${gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: name, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }) })
  t.equal(response.status, 201, `${name} registered`)
  return ((await response.json()) as { client_id: string }).client_id
}

t.test('npm run admin -- --help lists the verbs', async (t) => {
  const run = await cli(['--help'], {}, ['npm', ['run', '--silent', 'admin', '--']])
  t.equal(run.code, 0)
  for (const verb of ['clients', 'grants', 'revoke', 'block', 'unblock', 'blocks']) t.match(run.stdout, new RegExp(`^  ${verb}\\b`, 'm'), `names ${verb}`)
  t.match(run.stdout, /GATEWAY_URL/)
})

t.test('clients: a table by default, the JSON with --json', async (t) => {
  const clientId = await register('CLI Table Client')
  const table = await cli(['clients'])
  t.equal(table.code, 0, table.stderr)
  const [header, ...rows] = table.stdout.trim().split('\n')
  t.match(header, /^NAME\s+GRANTS\s+BLOCKED\s+FIRST SEEN\s+LAST USED\s+REDIRECT URIS\s+CLIENT ID$/)
  const row = rows.find((line) => line.endsWith(clientId))
  t.ok(row, 'the client has a row ending in its full client id')
  t.match(row, /^CLI Table Client\s+0\s+no\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/)
  t.match(table.stdout, /\d+ client\(s\)\n$/)

  const json = await cli(['clients', '--json'])
  t.equal(json.code, 0)
  const parsed = JSON.parse(json.stdout)
  t.match(parsed.clients.find((c: any) => c.client_id === clientId), { client_name: 'CLI Table Client', grants: 0, blocked: false, redirect_uris: ['https://chatgpt.com/connector/oauth/cli'] })
  t.equal(parsed.next_cursor, null)
})

t.test('clients pages with --limit and --cursor, or --all', async (t) => {
  await register('CLI Page A')
  await register('CLI Page B')
  const first = await cli(['clients', '--limit', '1'])
  t.equal(first.code, 0, first.stderr)
  const cursor = /--cursor (\S+)/.exec(first.stdout)?.[1]
  t.ok(cursor, 'the next page is named')
  const second = await cli(['clients', '--limit', '1', '--cursor', cursor!, '--json'])
  t.equal(JSON.parse(second.stdout).clients.length, 1)
  const all = JSON.parse((await cli(['clients', '--limit', '1', '--all', '--json'])).stdout)
  t.ok(all.clients.length >= 3, 'every page')
  t.equal(all.next_cursor, null)
  t.equal(new Set(all.clients.map((c: any) => c.client_id)).size, all.clients.length, 'no client twice')
})

t.test('block, blocks, unblock', async (t) => {
  const clientId = await register('CLI Blocked Client')
  const blocked = await cli(['block', '--client-id', clientId, '--reason', 'abuse ticket 4711'])
  t.equal(blocked.code, 0, blocked.stderr)
  const blockId = /Blocked: (b_\S+)/.exec(blocked.stdout)?.[1]
  t.ok(blockId, blocked.stdout)
  const byName = JSON.parse((await cli(['block', '--name-pattern', '*scam*', '--reason', 'scam', '--json'])).stdout)
  t.match(byName, { block_id: /^b_/, revoked: 0 })

  const list = await cli(['blocks'])
  t.equal(list.code, 0)
  t.match(list.stdout, /^BLOCK ID\s+KIND\s+CREATED\s+REASON\s+VALUE$/m)
  t.match(list.stdout, new RegExp(`^${blockId}\\s+client_id\\s+\\S+ \\S+\\s+abuse ticket 4711\\s+${clientId.slice(0, 40)}`, 'm'))
  t.match(list.stdout, /client_name_pattern\s+\S+ \S+\s+scam\s+\*scam\*$/m)
  t.match((await cli(['clients'])).stdout, new RegExp(`^CLI Blocked Client\\s+0\\s+yes ${blockId}`, 'm'), 'clients shows the block')

  const refused = await fetch(`${gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'Big Scam', redirect_uris: ['https://chatgpt.com/connector/oauth/x'], token_endpoint_auth_method: 'none' }) })
  t.equal(refused.status, 400, 'the gateway applies the block the CLI made')

  t.equal((await cli(['unblock', blockId!])).code, 0)
  t.equal((await cli(['unblock', byName.block_id])).code, 0)
  t.notMatch((await cli(['blocks'])).stdout, /b_/, 'none left')
  const again = await cli(['unblock', blockId!])
  t.equal(again.code, 1, 'an unknown block is an error')
  t.match(again.stderr, /^error: block_id: no block has this id \(invalid_request, HTTP 404\)/)
})

t.test('revoke by client and by user answer with counts', async (t) => {
  const clientId = await register('CLI Revoke Client')
  const byClient = await cli(['revoke', '--client-id', clientId])
  t.equal(byClient.code, 0, byClient.stderr)
  t.match(byClient.stdout, /^Revoked 0 grant\(s\) of client /)
  t.match(JSON.parse((await cli(['revoke', '--user', 'nobody', '--json'])).stdout), { revoked: 0 })
  const unknown = await cli(['revoke', 'g_unknown'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /grant_id: no live grant/)
})

t.test('grants lists real connections, and revoke ends one by its id', async (t) => {
  // The flow helpers need only where the gateway, the upstream and the MCP resource are.
  const stack = { gatewayUrl, upstream, mcp: { url: MCP_RESOURCE } } as unknown as Stack
  const client = await registerClient(stack, { client_name: 'CLI Connected' })
  const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
  const listed = await cli(['grants', '--client-id', client.client_id])
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, /^GRANT ID\s+USER\s+CLIENT\s+SCOPE\s+CREATED\s+LAST USED\s+CLIENT ID$/m)
  const row = listed.stdout.split('\n').find((line) => line.endsWith(client.client_id))
  t.match(row, /^g_\S+\s+np-user-1001\s+CLI Connected\s+openid offline_access\s+/)
  const grantId = row!.split(/\s+/)[0]!
  t.match(JSON.parse((await cli(['grants', '--user', 'np-user-1001', '--json'])).stdout).grants, [{ grant_id: grantId, user: 'np-user-1001', client_name: 'CLI Connected' }])

  const revoked = await cli(['revoke', grantId])
  t.equal(revoked.code, 0, revoked.stderr)
  t.equal(revoked.stdout, `Revoked grant ${grantId}.\n`)
  const refresh = await postForm(`${gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id })
  t.equal(refresh.status, 400, 'its refresh is refused')
  t.match((await cli(['grants', '--client-id', client.client_id])).stdout, /^0 grant\(s\)$/m)
})

t.test('bad usage exits 2 with a message; refusals and outages exit 1', async (t) => {
  const usage: Array<[string[], RegExp]> = [
    [[], /a verb is required/],
    [['frobnicate'], /unknown verb frobnicate/],
    [['clients', '--bogus'], /Unknown option '--bogus'/],
    [['block', '--client-id', 'x'], /needs --reason/],
    [['block', '--client-id', 'x', '--redirect-host', 'y', '--reason', 'r'], /exactly one of/],
    [['revoke'], /needs a grant id, or exactly one of/],
    [['revoke', 'g_1', '--user', 'u'], /not both/],
    [['unblock'], /needs one block id/],
    [['blocks', '--limit', '3'], /--limit does not apply/],
  ]
  // Independent runs, side by side: each is a process start.
  const runs = await Promise.all(usage.map(([args]) => cli(args)))
  usage.forEach(([args, message], i) => {
    t.equal(runs[i]!.code, 2, `${args.join(' ') || '(nothing)'} exits 2`)
    t.match(runs[i]!.stderr, message)
  })
  const closedPort = await freePort()
  const [noUrl, noToken, wrongToken, badValue, badLimit, unreachable] = await Promise.all([
    cli(['clients'], { GATEWAY_URL: undefined }),
    cli(['clients'], { ADMIN_TOKEN: undefined }),
    cli(['clients'], { ADMIN_TOKEN: 'x'.repeat(40) }),
    cli(['block', '--redirect-host', 'https://evil.example/', '--reason', 'r']),
    cli(['clients', '--limit', '5000']),
    cli(['clients'], { GATEWAY_URL: `http://127.0.0.1:${closedPort}` }),
  ])
  t.equal(noUrl.code, 2)
  t.match(noUrl.stderr, /GATEWAY_URL is not set/)
  t.equal(noToken.code, 2)
  t.match(noToken.stderr, /ADMIN_TOKEN is not set/)
  t.equal(wrongToken.code, 1)
  t.match(wrongToken.stderr, /^error: the bearer token is not the ADMIN_TOKEN \(invalid_token, HTTP 401\) \(check ADMIN_TOKEN\)/)
  t.equal(badValue.code, 1)
  t.match(badValue.stderr, /redirect_host: must be a host name/)
  t.equal(badLimit.code, 1)
  t.match(badLimit.stderr, /limit: must be at most 1000/)

  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /^error: cannot reach the gateway at http:\/\/127\.0\.0\.1:\d+/)
})
