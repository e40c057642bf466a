/**
 * Front mode end to end: the MCP SDK client knows only the GATEWAY's /mcp
 * URL (MCP_RESOURCE = gateway origin + /mcp). The gateway proxies it to the
 * unchanged SDK MCP server, which here keeps sessions (Mcp-Session-Id) and
 * answers 401 without any WWW-Authenticate header, so the challenge the
 * client follows is the gateway's. A tool that reports progress only when
 * the test lets it shows that a streamable HTTP session passes through
 * unbuffered and byte for byte.
 */
import t from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

/** Progress step n leaves the MCP server only once the test opens step n. */
class ProgressGate {
  readonly #opened = new Map<number, () => void>()
  readonly #waits = new Map<number, Promise<void>>()

  wait(step: number): Promise<void> {
    if (!this.#waits.has(step)) this.#waits.set(step, new Promise((resolve) => this.#opened.set(step, resolve)))
    return this.#waits.get(step)!
  }

  open(step: number) {
    void this.wait(step)
    this.#opened.get(step)!()
  }
}

/** Fails the test instead of hanging when something that must happen does not (a buffering proxy). */
function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen: something buffered`)), ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

let gate = new ProgressGate()
const stack = await startStack({ front: true, mcp: { omitChallenge: true, sessions: true, beforeProgress: (step) => gate.wait(step) } })
t.teardown(() => stack.close())
const mcpUrl = stack.mcpUrl
const resourceMetadata = `${stack.gatewayUrl}/.well-known/oauth-protected-resource/mcp`

t.test('the MCP URL is the gateway', async (t) => {
  t.equal(mcpUrl, `${stack.gatewayUrl}/mcp`)
  const prm = (await (await fetch(resourceMetadata)).json()) as { resource: string; authorization_servers: string[] }
  t.same(prm, { resource: mcpUrl, authorization_servers: [stack.gatewayUrl], scopes_supported: ['openid', 'profile', 'email'], bearer_methods_supported: ['header'] }, 'RFC 9728 metadata on the MCP origin, offline_access left to the authorization server (SEP-2207)')
  const asm = (await (await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`)).json()) as Record<string, string>
  t.equal(asm.issuer, stack.gatewayUrl, 'the issuer is the origin it is served from (RFC 8414 §3.3)')
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint']) {
    t.equal(new URL(asm[endpoint]!).origin, new URL(mcpUrl).origin, `${endpoint} on the MCP origin, where clients that build it from the MCP URL look`)
  }
})

let provider: ConnectorProvider

t.test('the SDK client connects through the gateway: 401, discovery, sign-in, tools, refresh', async (t) => {
  provider = new ConnectorProvider(CHATGPT_REDIRECT)

  // 1. The MCP server's bare 401 reaches the client with the gateway's challenge.
  await t.rejects(mcpClient().connect(transportFor(mcpUrl, provider)), { message: 'Unauthorized' })
  t.equal(provider.discovered?.resourceMetadataUrl, resourceMetadata, 'the client followed resource_metadata from the 401 the gateway completed')
  t.equal(provider.discovered?.authorizationServerUrl, stack.gatewayUrl)
  const authorizationUrl = provider.lastAuthorizationUrl!
  t.equal(authorizationUrl.origin + authorizationUrl.pathname, `${stack.gatewayUrl}/authorize`)
  t.equal(authorizationUrl.searchParams.get('resource'), mcpUrl, 'the resource is the gateway /mcp URL')

  // 2. Sign-in, code, tokens.
  const result = await signInAndFollow(new CookieBrowser(), authorizationUrl.href, stack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  await auth(provider, { serverUrl: mcpUrl, authorizationCode: result.redirect!.searchParams.get('code')! })
  const first = provider.saved!
  t.ok(first.access_token)

  // 3. A session through the proxy: the MCP server's session id, a tool call, progress one event at a time.
  const client = mcpClient()
  const transport = transportFor(mcpUrl, provider)
  await client.connect(transport)
  t.ok(transport.sessionId, 'the MCP server set a session id')
  t.ok(stack.mcp.responses.some((response) => response.sessionId === transport.sessionId), 'the one the MCP server made')
  t.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')

  gate = new ProgressGate()
  const seen: number[] = []
  const arrived = [1, 2, 3].map(() => Promise.withResolvers<void>())
  gate.open(1)
  const call = client.callTool({ name: 'progress', arguments: { steps: 3 } }, undefined, {
    onprogress: ({ progress }) => {
      seen.push(progress)
      arrived[progress - 1]!.resolve()
      // The next notification leaves the MCP server only now that this one has reached the client.
      if (progress < 3) gate.open(progress + 1)
    },
  })
  for (const step of [1, 2, 3]) await within(arrived[step - 1]!.promise, `progress ${step} reaching the client`)
  t.equal(textOf(await call), 'done after 3 steps')
  t.same(seen, [1, 2, 3], 'each progress event arrived before the next was sent')

  // 4. Refresh, then a new session with the new token; DELETE ends it at the MCP server.
  t.equal(await auth(provider, { serverUrl: mcpUrl }), 'AUTHORIZED')
  t.not(provider.saved!.access_token, first.access_token, 'a new access token')
  await client.close()
  const again = mcpClient()
  const second = transportFor(mcpUrl, provider)
  await again.connect(second)
  t.equal(textOf(await again.callTool({ name: 'echo', arguments: { text: 'after refresh' } })), 'after refresh')
  await second.terminateSession()
  t.ok(stack.mcp.responses.some((response) => response.method === 'DELETE' && response.status === 200), 'the session ended at the MCP server')
  await again.close()
})

t.test('a streamable HTTP session passes byte for byte while the MCP server is slow', async (t) => {
  const token = provider.saved!.access_token
  const headers = {
    authorization: `Bearer ${token}`,
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    'mcp-protocol-version': '2025-06-18',
    origin: 'https://inspector.example',
  }
  const post = (body: unknown, sessionId?: string) =>
    fetch(mcpUrl, { method: 'POST', headers: { ...headers, ...(sessionId ? { 'mcp-session-id': sessionId } : {}) }, body: JSON.stringify(body) })
  /** The bytes the MCP server wrote for its latest POST response. */
  const written = () => stack.mcp.responses.filter((response) => response.method === 'POST').at(-1)!.body()

  const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })
  const sessionId = init.headers.get('mcp-session-id')!
  t.ok(sessionId, 'Mcp-Session-Id comes through')
  t.match(init.headers.get('access-control-expose-headers'), /Mcp-Session-Id/, 'and browsers may read it')
  t.ok(Buffer.from(await init.arrayBuffer()).equals(written()), 'the initialize answer is byte for byte the MCP server\'s')
  t.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId)).status, 202)

  gate = new ProgressGate()
  gate.open(1)
  const response = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'progress', arguments: { steps: 3 }, _meta: { progressToken: 'p' } } }, sessionId)
  t.equal(response.headers.get('content-type'), 'text/event-stream')
  const reader = response.body!.getReader()
  const received: Buffer[] = []
  for (const step of [1, 2, 3]) {
    await within(readUntilProgress(reader, received, step), `progress ${step} reaching the client`)
    t.pass(`progress ${step} arrived before ${step < 3 ? `progress ${step + 1}` : 'the result'} was sent`)
    if (step < 3) gate.open(step + 1)
  }
  while (true) {
    const { done, value } = await reader.read()
    if (done) break
    received.push(Buffer.from(value))
  }
  const body = Buffer.concat(received)
  t.match(body.toString(), /done after 3 steps/)
  t.ok(body.equals(written()), 'the event stream is byte for byte the MCP server\'s, ü and ✓ included')
})

/** Reads SSE bytes until the progress notification for `step` is complete. */
async function readUntilProgress(reader: ReadableStreamDefaultReader<Uint8Array>, received: Buffer[], step: number) {
  const complete = () => Buffer.concat(received).toString().split('\n\n').slice(0, -1).some((event) => event.includes(`"progress":${step},`))
  while (!complete()) {
    const { done, value } = await reader.read()
    if (done) throw new Error('the stream ended early')
    received.push(Buffer.from(value))
  }
}

t.test('without a token the gateway answers with the MCP server\'s 401 and its own challenge', async (t) => {
  const response = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' })
  t.equal(response.status, 401)
  t.equal(response.headers.get('www-authenticate'), `Bearer resource_metadata="${resourceMetadata}"`)
})
