/**
 * Front mode in front of an MCP server that knows nothing of the gateway: its
 * challenges name its own (internal) address as `resource_metadata`. Through
 * the gateway every 401, and every 403 with a Bearer challenge (insufficient
 * scope), names the gateway's protected resource metadata instead, with the
 * server's other parameters kept, so the MCP SDK client, which knows only the
 * gateway's /mcp URL, signs in and calls tools without ever reaching the MCP
 * server's own document. A 403 without a challenge (the SDK's DNS rebinding
 * check of Origin) gets none: it is no sign-in problem.
 */
import t from 'tap'
import { ConnectorProvider, mcpClient, transportFor } from '../support/mcp-client.ts'
import { connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const stack = await startStack({ front: true, mcp: { namesItself: true, stepUp: { tool: 'save', scope: 'admin' }, allowedOrigins: ['https://app.example'] } })
t.teardown(() => stack.close())
const gatewayMetadata = `${stack.gatewayUrl}/.well-known/oauth-protected-resource/mcp`
const ownMetadata = `${new URL(stack.mcp.url).origin}/.well-known/oauth-protected-resource/mcp`

const post = (url: string, message: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: JSON.stringify(message) })
const initialize = (url: string, headers: Record<string, string> = {}) =>
  post(url, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'probe', version: '1' } } }, headers)

t.test('the MCP server names itself; through the gateway the challenge names the gateway', async (t) => {
  const direct = await initialize(stack.mcp.url, { authorization: 'Bearer not-a-token' })
  t.equal(direct.status, 401)
  t.equal(direct.headers.get('www-authenticate'), `Bearer error="invalid_token", error_description="The access token is invalid or expired", resource_metadata="${ownMetadata}"`, 'the MCP server\'s own challenge, as it sends it')
  await direct.body?.cancel()

  const fronted = await initialize(stack.mcpUrl, { authorization: 'Bearer not-a-token' })
  t.equal(fronted.status, 401)
  t.equal(fronted.headers.get('www-authenticate'), `Bearer error="invalid_token", error_description="The access token is invalid or expired", resource_metadata="${gatewayMetadata}"`, 'replaced in place, error and description kept')
  await fronted.body?.cancel()

  const bare = await initialize(stack.mcpUrl)
  t.equal(bare.headers.get('www-authenticate'), `Bearer resource_metadata="${gatewayMetadata}"`, 'without a token too')
  await bare.body?.cancel()
})

t.test('the SDK client connects through the gateway only: sign-in, tools, refresh', async (t) => {
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  const connection = await connectWithSdk(stack, provider)
  t.equal(provider.discovered?.resourceMetadataUrl, gatewayMetadata, 'the client followed the gateway\'s metadata')
  t.equal(provider.discovered?.resourceMetadata?.resource, stack.mcpUrl, 'whose resource is the URL it connected to (RFC 9728 §3.3)')
  t.equal(connection.authorizationUrl.origin, stack.gatewayUrl)
  t.match(connection.whoami, /^signed in as /)
  t.match(connection.whoamiAfterRefresh, /^signed in as /)
  t.equal(stack.mcp.ownMetadataRequests, 0, 'nothing ever asked the MCP server for its own metadata')
  await t.rejects(mcpClient().connect(transportFor(stack.mcpUrl, new ConnectorProvider(CHATGPT_REDIRECT))), { message: 'Unauthorized' }, 'a client without tokens is still asked to sign in')
})

t.test('403s: an insufficient_scope challenge names the gateway; a 403 without a challenge gets none', async (t) => {
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await connectWithSdk(stack, provider)
  const authorization = `Bearer ${provider.saved!.access_token}`
  const save = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'save', arguments: { text: 'x' } } }

  const direct = await post(stack.mcp.url, save, { authorization })
  t.equal(direct.status, 403)
  t.match(direct.headers.get('www-authenticate'), `resource_metadata="${ownMetadata}"`, 'the MCP server names its own metadata')
  await direct.body?.cancel()
  const scope = /scope="([^"]*)"/.exec(direct.headers.get('www-authenticate')!)![1]!.split(' ').filter((name) => name !== 'offline_access').join(' ')
  const fronted = await post(stack.mcpUrl, save, { authorization })
  t.equal(fronted.status, 403)
  t.equal(fronted.headers.get('www-authenticate'), `Bearer error="insufficient_scope", scope="${scope}", error_description="The save tool needs the admin scope", resource_metadata="${gatewayMetadata}"`, 'replaced in place; error, scope and description kept')
  await fronted.body?.cancel()

  const rebinding = { authorization, origin: 'https://rebinding.example' }
  const refusedDirect = await initialize(stack.mcp.url, rebinding)
  t.equal(refusedDirect.status, 403, 'the MCP server refuses an Origin it does not know')
  t.equal(refusedDirect.headers.get('www-authenticate'), null, 'without a challenge')
  await refusedDirect.body?.cancel()
  const refused = await initialize(stack.mcpUrl, rebinding)
  t.equal(refused.status, 403)
  t.equal(refused.headers.get('www-authenticate'), null, 'the gateway adds none: no token lifts this refusal')
  t.match(((await refused.json()) as { error?: { message?: string } }).error?.message, /Origin/, 'the server\'s own answer reaches the client')
  t.equal((await initialize(stack.mcpUrl, { authorization, origin: 'https://app.example' })).status, 200, 'an allowed Origin passes')
})
