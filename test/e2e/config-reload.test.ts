/**
 * The configuration file edited under a running gateway process: a valid
 * edit of the redirect URI allowlist applies within seconds, whether the file
 * is replaced (editors, ConfigMaps) or written in place; an invalid edit is
 * refused with one log line naming the field and the reason while the
 * previous list keeps serving; a change to a key that needs a restart is
 * named in the log and not applied; SIGHUP re-reads the file.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { stringify } from 'yaml'
import { register, registration, startCluster, type Replica } from '../support/replicas.ts'

const CLAUDE = 'https://claude.ai/api/mcp/auth_callback'
const APP = 'https://app.example.com/oauth/callback'
const CHATGPT = 'https://chatgpt.com/connector/oauth/*'

/** Registration status for one redirect URI. */
const statusFor = async (replica: Replica, uri: string) => (await registration(replica, { redirect_uris: [uri] })).status

async function eventually(check: () => Promise<boolean>, within = 10_000) {
  const deadline = Date.now() + within
  while (!(await check())) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return true
}

t.test('the allowlist is reloaded while serving; a bad edit is refused and the old list keeps serving', async (t) => {
  let base: Record<string, any> = {}
  const cluster = await startCluster({ replicas: 1, config: (file) => (base = file) })
  t.teardown(() => cluster.close())
  const [gateway] = cluster.replicas as [Replica]
  const withList = (allowedRedirectUris: string[], extra: Record<string, any> = {}) => ({ ...base, ...extra, allowedRedirectUris })
  const reloaded = (line: Record<string, any>) => line.msg === 'configuration reloaded: the redirect URI allowlist is applied'
  const reloads = () => gateway.logs().filter(reloaded).length

  const claude = await register(gateway, { redirect_uris: [CLAUDE] })
  t.equal(await statusFor(gateway, APP), 400, 'not allowed at first')

  // A valid edit, written as editors do: a new file renamed over the old one.
  cluster.writeConfig(withList([CHATGPT, APP]))
  // The line is logged once the new list is in force.
  await gateway.waitForLog(reloaded)
  t.equal(await statusFor(gateway, APP), 201, 'the new entry applies')
  t.equal(await statusFor(gateway, CLAUDE), 400, 'the removed entry is refused at registration')
  const authorize = await fetch(`${gateway.url}/authorize?client_id=${encodeURIComponent(claude.client_id)}&redirect_uri=${encodeURIComponent(CLAUDE)}&response_type=code`)
  t.equal(authorize.status, 400, 'and at /authorize for a client that registered it before')
  t.match(await authorize.text(), /no longer allowed/)
  t.equal(reloads(), 1, 'the reload is logged')
  t.notOk(gateway.logs().some((line) => /need a restart/.test(line.msg)), 'only the allowlist changed: no restart needed')

  // An invalid edit: a host wildcard. Applied, it would allow Claude again and drop the app.
  cluster.writeConfig(withList([CLAUDE, 'https://*.evil.example/callback']))
  const refused = await gateway.waitForLog((line) => /configuration not reloaded/.test(line.msg))
  t.match(refused.msg, /allowedRedirectUris\.1: .*whole path segment/, 'the log names the field and the reason')
  t.notMatch(refused.msg, /\n/, 'on one line')
  t.equal(refused.level, 50, 'as an error')
  await new Promise((resolve) => setTimeout(resolve, 2500)) // longer than the poll: the same bad file is not reported again
  t.equal(gateway.logs().filter((line) => /configuration not reloaded/.test(line.msg)).length, 1, 'logged once')
  t.equal(await statusFor(gateway, APP), 201, 'the previous list keeps serving')
  t.equal(await statusFor(gateway, CLAUDE), 400)

  // A valid edit written in place, with a change that needs a restart.
  writeFileSync(cluster.configFile, stringify(withList([CLAUDE, APP], { lifetimes: { codeSeconds: 30 } })))
  const warning = await gateway.waitForLog((line) => /need a restart/.test(line.msg))
  t.same(warning.keys, ['lifetimes.codeSeconds'], 'the key that needs a restart is named')
  t.equal(await statusFor(gateway, CLAUDE), 201, 'the allowlist part of the same edit applies')

  const before = reloads()
  gateway.signal('SIGHUP')
  t.ok(await eventually(async () => reloads() === before + 1), 'SIGHUP re-reads the file')
  t.equal(await statusFor(gateway, APP), 201, 'and keeps serving')
})
