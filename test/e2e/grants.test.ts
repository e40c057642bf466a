/**
 * Grants end to end, with the real parts: the oidc-provider upstream (with
 * its RFC 7009 revocation endpoint, and a profile without one), the MCP SDK
 * client and server, the gateway in front mode. One user connects two
 * clients (ChatGPT-like and Claude-like); ending one grant refuses its
 * refresh without reaching the upstream's token endpoint, revokes its
 * upstream refresh token (the upstream saw it), and refuses its access token
 * at /mcp, while the other grant still refreshes and calls tools.
 */
import t from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { postForm } from '../support/flow.ts'
import { grantOf } from '../support/grants.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { sample } from '../support/metrics.ts'
import { callWhoami, connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, type Stack } from '../support/stack.ts'

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'
const USER = 'np-user-1001'
/** profile and email too, so the upstream tells the user's name and email. */
const withProfile = (file: Record<string, any>) => ({ ...file, scopes: { ...file.scopes, default: ['openid', 'profile', 'email', 'offline_access'] } })

function refreshAt(stack: Stack, provider: ConnectorProvider) {
  return postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: provider.saved!.refresh_token!, client_id: provider.client!.client_id })
}

function mcpWith(stack: Stack, accessToken: string) {
  return fetch(stack.mcpUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  })
}

t.test('two clients of one user: one revoked, the other goes on', async (t) => {
  const stack = await startStack({ front: true, config: withProfile })
  t.teardown(() => stack.close())
  const { grants } = stack.gateway.gateway

  const chatgpt = new ConnectorProvider(CHATGPT_REDIRECT)
  const claude = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude' })
  const first = await connectWithSdk(stack, chatgpt)
  const second = await connectWithSdk(stack, claude)
  t.equal(first.whoamiAfterRefresh, `signed in as ${USER}`)
  t.equal(second.whoamiAfterRefresh, `signed in as ${USER}`)

  const listed = await grants.listForUser(USER)
  t.equal(listed.items.length, 2, 'one grant per client for the user')
  t.equal(listed.nextCursor, undefined, 'on one page')
  const byName = new Map(listed.items.map((grant) => [grant.clientName, grant]))
  const chatgptGrant = byName.get('ChatGPT')!
  const claudeGrant = byName.get('Claude')!
  t.match(chatgptGrant, { clientId: chatgpt.client!.client_id, redirectHost: 'chatgpt.com', preset: 'chatgpt', unverified: true, refreshCount: 1, user: { id: USER, name: 'NeonPanel Demo', email: 'demo@neonpanel.test' } })
  t.match(claudeGrant, { redirectHost: 'claude.ai', preset: 'claude', refreshCount: 1 })
  t.equal(grantOf(chatgpt.saved!.refresh_token!).g, chatgptGrant.grantId, "the client's refresh token names its grant")
  t.notOk('upstreamRefreshToken' in chatgptGrant || 'accessTokens' in chatgptGrant, 'listings carry no token')
  t.same((await grants.list({ clientId: claude.client!.client_id })).items.map((grant) => grant.grantId), [claudeGrant.grantId], 'listed by client')

  // Someone else's id ends nothing, and says no more than an unknown id would.
  t.same(await grants.revokeGrant(chatgptGrant.grantId, 'user', { user: 'np-user-2002' }), { ended: false, upstreamRevocation: 'unsupported' })
  t.same(await grants.revokeGrant('g_unknown', 'admin'), { ended: false, upstreamRevocation: 'unsupported' })

  const tokenCallsBefore = stack.upstream.requests.filter((request) => request.path === '/token').length
  const outcome = await grants.revokeGrant(chatgptGrant.grantId, 'admin')
  t.same(outcome, { ended: true, upstreamRevocation: 'revoked' }, 'ended, and revoked at the upstream')
  const revocations = stack.upstream.requests.filter((request) => request.path === '/token/revocation')
  t.equal(revocations.length, 1, 'the upstream saw one revocation')
  t.match(revocations[0], { status: 200, params: { token_type_hint: 'refresh_token' } })
  t.equal(await grants.get(chatgptGrant.grantId), undefined, 'the grant is gone')

  const refused = await failsWith(t, await refreshAt(stack, chatgpt), 400, 'invalid_grant')
  t.match(refused.error_description, /grant has ended \(an administrator revoked it\)/, 'the refusal says why')
  t.equal(stack.upstream.requests.filter((request) => request.path === '/token').length, tokenCallsBefore, 'the refused refresh never reached the upstream token endpoint')

  const atMcp = await mcpWith(stack, chatgpt.saved!.access_token)
  t.equal(atMcp.status, 401, 'its access token is refused at /mcp')
  t.match(await atMcp.json(), { error: 'invalid_token' }, 'by the gateway')
  t.match(atMcp.headers.get('www-authenticate'), /^Bearer resource_metadata="[^"]+", error="invalid_token"/, 'with the challenge that leads back to sign-in')

  // The other connection is untouched: it refreshes and calls tools.
  t.equal(await auth(claude, { serverUrl: stack.mcpUrl }), 'AUTHORIZED', 'the other client refreshes')
  t.equal(await callWhoami(stack, claude), `signed in as ${USER}`, 'and calls tools')
  t.equal((await grants.get(claudeGrant.grantId))?.refreshCount, 2)

  // A block ends what it matches, and its access tokens are refused too.
  const blocked = await grants.addBlock({ kind: 'redirect_host', value: 'CLAUDE.ai', reason: 'test' })
  t.equal(blocked.ended, 1, 'the block ended the grant it matches')
  t.equal(blocked.block.value, 'claude.ai', 'hosts are kept in lower case')
  t.match(await grants.isBlocked({ redirectUris: [CLAUDE_REDIRECT] }), { blockId: blocked.block.blockId }, 'and applies to the client')
  t.equal(await grants.isBlocked({ redirectUris: [CHATGPT_REDIRECT] }), undefined, 'not to others')
  t.equal((await mcpWith(stack, claude.saved!.access_token)).status, 401)
  const blockedRefresh = await failsWith(t, await refreshAt(stack, claude), 400, 'invalid_grant')
  t.match(blockedRefresh.error_description, /blocked/)
  t.equal(stack.upstream.requests.filter((request) => request.path === '/token/revocation').length, 2, 'its upstream token revoked too')
  t.equal((await grants.listForUser(USER)).items.length, 0)

  const metrics = await (await fetch(`${stack.gatewayUrl}/metrics`)).text()
  t.equal(sample(metrics, 'oauth_gateway_grants_created_total', {}), 2)
  t.equal(sample(metrics, 'oauth_gateway_grants_ended_total', { reason: 'revoked_by_admin' }), 1)
  t.equal(sample(metrics, 'oauth_gateway_grants_ended_total', { reason: 'block' }), 1)
  t.equal(sample(metrics, 'oauth_gateway_grants_active', {}), 0)
  t.equal(sample(metrics, 'oauth_gateway_blocks', {}), 1)
})

t.test('revoking by client and by user; a client revoking its own refresh token ends its grant', async (t) => {
  const stack = await startStack()
  t.teardown(() => stack.close())
  const { grants } = stack.gateway.gateway
  const one = new ConnectorProvider(CHATGPT_REDIRECT)
  const two = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude' })
  await connectWithSdk(stack, one)
  await connectWithSdk(stack, two)
  t.equal(await grants.revokeWhere({ clientId: one.client!.client_id }), 1, 'by client: its one grant')
  t.equal(await grants.revokeWhere({ clientId: one.client!.client_id }), 0, 'again: none left')
  t.equal((await grants.listForUser(USER)).items.length, 1)

  const three = new ConnectorProvider(CHATGPT_REDIRECT, { client_name: 'ChatGPT again' })
  await connectWithSdk(stack, three)
  const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: three.saved!.refresh_token!, token_type_hint: 'refresh_token', client_id: three.client!.client_id })
  t.equal(revoked.status, 200)
  t.notOk((await grants.listForUser(USER)).items.some((grant) => grant.clientName === 'ChatGPT again'), '/revoke of the refresh token ended its grant')
  await failsWith(t, await refreshAt(stack, three), 400, 'invalid_grant')

  t.equal(await grants.revokeWhere({ user: USER }), 1, 'by user: the rest')
  t.equal((await grants.list({})).items.length, 0)
})

t.test('an upstream without a revocation endpoint, identities from userinfo', async (t) => {
  const stack = await startStack({ upstream: { revocation: false }, config: (file) => withProfile({ ...file, upstream: { ...file.upstream, identitySource: 'userinfo' } }) })
  t.teardown(() => stack.close())
  const { grants } = stack.gateway.gateway
  t.equal(await stack.gateway.gateway.upstream.identitySource(), 'userinfo')
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(stack, provider)
  const [grant] = (await grants.list({})).items
  t.match(grant, { user: { id: USER, email: 'demo@neonpanel.test' } }, 'the user from userinfo')
  t.ok(stack.upstream.requestLines.some((line) => line.startsWith('GET /me')), 'userinfo was asked')
  t.same(await grants.revokeGrant(grant!.grantId, 'admin'), { ended: true, upstreamRevocation: 'unsupported' }, 'ended here; the upstream has nothing to revoke with')
  await failsWith(t, await refreshAt(stack, provider), 400, 'invalid_grant')
})

t.test('an upstream that tells no identity: grants without a user', async (t) => {
  const stack = await startStack({ config: (file) => ({ ...file, upstream: { ...file.upstream, identitySource: 'none' } }) })
  t.teardown(() => stack.close())
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(stack, provider)
  const [grant] = (await stack.gateway.gateway.grants.list({})).items
  t.ok(grant, 'the grant exists')
  t.equal(grant!.user, undefined, 'without a user')
  t.equal(await stack.gateway.gateway.grants.revokeWhere({ clientId: provider.client!.client_id }), 1, 'ops still revoke it by client')
})
