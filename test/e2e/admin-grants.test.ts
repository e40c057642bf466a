/**
 * Grants through the Admin API, with the real parts: the oidc-provider
 * upstream (with its revocation endpoint, and a profile without one), the MCP
 * SDK client and server, grants in a SQLite file. One user connects a
 * ChatGPT-like and a Claude-like client; ops list clients and grants (pages
 * included), revoke by grant, by client and by user, and block by client id;
 * each refused refresh is refused, the upstream saw each revocation, the
 * other connection still refreshes and calls tools. The audit lines name the
 * grants, and the whole log holds no token.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import t from 'tap'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { admin, adminFetch, ADMIN_TOKEN } from '../support/admin.ts'
import { postForm } from '../support/flow.ts'
import { grantFixture, upstreamRefreshTokenOf } from '../support/grants.ts'
import { capturedLog } from '../support/log-capture.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { callWhoami, connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, TEST_SECRET, type Stack } from '../support/stack.ts'

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'
const USER = 'np-user-1001'

const directory = mkdtempSync(join(tmpdir(), 'gateway-admin-grants-'))
t.teardown(() => rmSync(directory, { recursive: true, force: true }))
const log = capturedLog()
const stack = await startStack({ env: { ADMIN_TOKEN }, logger: log.logger, grantStorage: new SqliteGrantStorage(join(directory, 'state.sqlite')) })
t.teardown(() => stack.close())
const url = stack.gatewayUrl

/** Every token the test saw, to prove none reached the log. */
const seen = new Map<string, string>()

async function connect(provider: ConnectorProvider, name: string) {
  await connectWithSdk(stack, provider)
  seen.set(`${name} access token`, provider.saved!.access_token)
  seen.set(`${name} refresh token`, provider.saved!.refresh_token!)
  seen.set(`${name} upstream refresh token`, await upstreamRefreshTokenOf(stack.gateway, provider.saved!.refresh_token!))
}

function refreshAt(stack: Stack, provider: ConnectorProvider) {
  return postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: provider.saved!.refresh_token!, client_id: provider.client!.client_id })
}

const revocationsAtUpstream = (stack: Stack) => stack.upstream.requests.filter((request) => request.path === '/token/revocation' && request.status === 200).length
const auditLines = () => log.parsed().filter((line) => line.audit === true)

t.test('two clients of one user: listed, one revoked by its grant id, the other goes on', async (t) => {
  const chatgpt = new ConnectorProvider(CHATGPT_REDIRECT)
  const claude = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude' })
  await connect(chatgpt, 'ChatGPT')
  await connect(claude, 'Claude')

  const { clients } = await admin(url, '/admin/clients')
  t.match(clients.find((c: any) => c.client_id === chatgpt.client!.client_id), { client_name: 'ChatGPT', redirect_uris: [CHATGPT_REDIRECT], grants: 1, blocked: false, first_seen_at: /Z$/, last_used_at: /Z$/ })
  t.match(clients.find((c: any) => c.client_id === claude.client!.client_id), { client_name: 'Claude', grants: 1 })

  const listed = await admin(url, `/admin/grants?user=${USER}`)
  t.equal(listed.grants.length, 2, 'one grant per client')
  t.equal(listed.next_cursor, null)
  const chatgptGrant = listed.grants.find((g: any) => g.client_name === 'ChatGPT')
  t.match(chatgptGrant, { grant_id: /^g_/, client_id: chatgpt.client!.client_id, user: USER, scope: /openid/, created_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, last_used_at: /Z$/ })
  t.notOk(JSON.stringify(listed).includes(seen.get('ChatGPT upstream refresh token')!), 'no upstream token in the listing')
  t.same((await admin(url, `/admin/grants?client_id=${encodeURIComponent(claude.client!.client_id)}`)).grants.map((g: any) => g.client_name), ['Claude'], 'by client')
  t.same((await admin(url, '/admin/grants?user=np-user-2002')).grants, [], 'another user has none')

  // A page at a time: every grant once.
  const first = await admin(url, '/admin/grants?limit=1')
  t.equal(first.grants.length, 1)
  t.type(first.next_cursor, 'string')
  const second = await admin(url, `/admin/grants?limit=1&cursor=${first.next_cursor}`)
  t.equal(second.grants.length, 1)
  t.not(second.grants[0].grant_id, first.grants[0].grant_id, 'the second page goes on from the first')

  // A wrong body ends nothing.
  for (const body of [{ client_id: chatgpt.client!.client_id, user: USER }, { clientId: chatgpt.client!.client_id }, { user: [USER] }]) {
    await failsWith(t, await adminFetch(url, '/admin/grants/revoke', { body }), 400, 'invalid_request')
  }
  t.equal((await admin(url, `/admin/grants?user=${USER}`)).grants.length, 2, 'both grants are still there')

  const before = revocationsAtUpstream(stack)
  const deleted = await adminFetch(url, `/admin/grants/${chatgptGrant.grant_id}`, { method: 'DELETE' })
  t.equal(deleted.status, 204)
  t.equal(deleted.headers.get('upstream-revocation'), 'revoked')
  t.equal(revocationsAtUpstream(stack), before + 1, 'the upstream saw the revocation')
  const refused = await failsWith(t, await refreshAt(stack, chatgpt), 400, 'invalid_grant')
  t.match(refused.error_description, /an administrator revoked it/)
  await failsWith(t, await adminFetch(url, `/admin/grants/${chatgptGrant.grant_id}`, { method: 'DELETE' }), 404, 'invalid_request')

  t.equal(await auth(claude, { serverUrl: stack.mcp.url }), 'AUTHORIZED', 'the other client refreshes')
  t.equal(await callWhoami(stack, claude), `signed in as ${USER}`, 'and calls tools')
  t.same((await admin(url, `/admin/grants?user=${USER}`)).grants.map((g: any) => g.client_name), ['Claude'])

  t.match(auditLines().find((line) => line.action === 'grants.delete'), { actor: 'admin', grant_ids: [chatgptGrant.grant_id], count: 1, upstream_revocation: 'revoked' })
})

t.test('revoke by client and by user answer how many ended', async (t) => {
  const again = new ConnectorProvider(CHATGPT_REDIRECT, { client_name: 'ChatGPT again' })
  await connect(again, 'second ChatGPT')
  const before = revocationsAtUpstream(stack)
  t.same(await admin(url, '/admin/grants/revoke', { body: { client_id: again.client!.client_id } }), { revoked: 1 }, 'by client: its one grant')
  t.equal(revocationsAtUpstream(stack), before + 1)
  await failsWith(t, await refreshAt(stack, again), 400, 'invalid_grant')
  t.same(await admin(url, '/admin/grants/revoke', { body: { client_id: again.client!.client_id } }), { revoked: 0 }, 'again: none left')

  const left = (await admin(url, `/admin/grants?user=${USER}`)).grants.map((g: any) => g.grant_id)
  t.ok(left.length >= 1)
  t.same(await admin(url, '/admin/grants/revoke', { body: { user: USER } }), { revoked: left.length }, 'by user: all of theirs')
  t.same((await admin(url, '/admin/grants')).grants, [])
  const lines = auditLines().filter((line) => line.action === 'grants.revoke')
  t.match(lines, [{ actor: 'admin', client_id: again.client!.client_id, count: 1, grant_ids: [/^g_/] }, { count: 0, grant_ids: [] }, { user: USER, count: left.length }])
  t.same([...lines[2]!.grant_ids].sort(), [...left].sort(), 'the audit line names every grant it ended')
})

t.test('a client id block ends its grants and refuses its refresh with invalid_client', async (t) => {
  const blocked = new ConnectorProvider(CHATGPT_REDIRECT, { client_name: 'Soon Blocked' })
  const kept = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude kept' })
  await connect(blocked, 'blocked')
  await connect(kept, 'kept')
  const before = revocationsAtUpstream(stack)
  const answer = await admin(url, '/admin/blocks', { body: { client_id: blocked.client!.client_id, reason: 'leaked its users\' data' } }, 201)
  t.match(answer, { block_id: /^b_/, revoked: 1 }, 'the block ended the grant it matches')
  t.match(auditLines().find((line) => line.action === 'blocks.create' && line.block_id === answer.block_id), { kind: 'client_id', count: 1, grant_ids: [/^g_/] })
  t.equal(revocationsAtUpstream(stack), before + 1, 'and revoked its upstream refresh token')
  const refused = await failsWith(t, await refreshAt(stack, blocked), 401, 'invalid_client')
  t.match(refused.error_description, /blocked .*leaked its users' data/)
  t.equal(await auth(kept, { serverUrl: stack.mcp.url }), 'AUTHORIZED', 'another client is not affected')

  await admin(url, `/admin/blocks/${answer.block_id}`, { method: 'DELETE' }, 204)
  await failsWith(t, await refreshAt(stack, blocked), 400, 'invalid_grant')
  t.pass('lifting the block does not bring the ended grant back: the client connects again')
})

t.test('the audit lines and the rest of the log hold no token', async (t) => {
  const text = log.lines.join('\n')
  t.ok(auditLines().length >= 8, 'audit lines were written')
  for (const [name, value] of seen) t.notOk(text.includes(value), `no ${name} in the log`)
  t.notOk(text.includes(ADMIN_TOKEN), 'no admin token in the log')
  t.notOk(text.includes(TEST_SECRET), 'no gateway secret in the log')
  t.notOk(text.includes(stack.upstream.clientSecret), 'no upstream client secret in the log')
})

t.test('an upstream without a revocation endpoint: the answer says so', async (t) => {
  const bare = await startStack({ env: { ADMIN_TOKEN }, upstream: { revocation: false } })
  t.teardown(() => bare.close())
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(bare, provider)
  t.same(await admin(bare.gatewayUrl, '/admin/grants/revoke', { body: { client_id: provider.client!.client_id } }), { revoked: 1, upstream_revocation: 'unsupported' })
  await failsWith(t, await refreshAt(bare, provider), 400, 'invalid_grant')

  const other = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(bare, other)
  const [grant] = (await admin(bare.gatewayUrl, '/admin/grants')).grants
  const deleted = await adminFetch(bare.gatewayUrl, `/admin/grants/${grant.grant_id}`, { method: 'DELETE' })
  t.equal(deleted.status, 204)
  t.equal(deleted.headers.get('upstream-revocation'), 'unsupported')
})

t.test('an upstream that cannot be reached: the grants end here, and the answer says the upstream revocation failed', async (t) => {
  const cut = await startStack({ env: { ADMIN_TOKEN }, faultProxy: true })
  t.teardown(() => cut.close())
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(cut, provider)
  await cut.proxy!.refuse()
  t.teardown(() => cut.proxy!.accept())
  t.same(await admin(cut.gatewayUrl, '/admin/grants/revoke', { body: { client_id: provider.client!.client_id } }), { revoked: 1, upstream_revocation: 'failed', upstream_revocation_failed: 1 })
  t.same((await admin(cut.gatewayUrl, '/admin/grants')).grants, [], 'ended at the gateway')
  await failsWith(t, await refreshAt(cut, provider), 400, 'invalid_grant')
})

t.test('thousands of grants: the API pages through every one once, in order, 1000 at most a page', async (t) => {
  const many = await startStack({ env: { ADMIN_TOKEN } })
  t.teardown(() => many.close())
  const grants = Array.from({ length: 2500 }, (_, n) => grantFixture(n))
  await many.gateway.gateway.grants.storage.createGrants(grants)

  const walk = async (query: string) => {
    const ids: string[] = []
    let pages = 0
    let cursor: string | null = null
    do {
      const page: { grants: Array<{ grant_id: string }>; next_cursor: string | null } = await admin(many.gatewayUrl, `/admin/grants?limit=1000${query}${cursor ? `&cursor=${cursor}` : ''}`)
      t.ok(page.grants.length <= 1000)
      ids.push(...page.grants.map((grant) => grant.grant_id))
      cursor = page.next_cursor
      pages++
    } while (cursor !== null)
    return { ids, pages }
  }
  const all = await walk('')
  t.equal(all.ids.length, 2500, 'every grant')
  t.equal(new Set(all.ids).size, 2500, 'each once')
  t.same(all.ids, [...all.ids].sort(), 'in creation order')
  t.ok(all.pages >= 3, `${all.pages} pages`)
  const alice = await walk('&user=alice')
  t.equal(alice.ids.length, 1250, "one user's, through the pages")
  t.equal((await admin(many.gatewayUrl, '/admin/grants')).grants.length, 100, 'a page is 100 by default')
  await failsWith(t, await adminFetch(many.gatewayUrl, '/admin/grants?limit=1001'), 400, 'invalid_request')
})
