/**
 * End to end: the RFC 8707 `resource` as clients send it. The MCP SDK client
 * (choosing its resource the way a client with its own rule would) and a
 * hand-driven ChatGPT-like client send the origin root or a trailing slash
 * on authorize, token and refresh, and reach the unchanged MCP server; the
 * upstream, which knows the configured resource only, is sent that one. A
 * foreign resource is refused at both endpoints, with a description naming
 * what is accepted; with `upstream.acceptOriginRootResource: false` the
 * origin root is refused too.
 */
import t from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { exchangeCode, obtainCode, pkcePair, authorizeUrl, postCodeExchange, postForm, registerClient, type Tokens } from '../support/flow.ts'
import { ConnectorProvider, textOf } from '../support/mcp-client.ts'
import { connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, type Stack } from '../support/stack.ts'

/** The SDK client with its own resource rule (OAuthClientProvider.validateResourceURL), sent on authorize, token and refresh alike. */
class ResourceChoosingProvider extends ConnectorProvider {
  readonly #resource: string
  constructor(redirectUrl: string, resource: string) {
    super(redirectUrl)
    this.#resource = resource
  }
  async validateResourceURL() {
    return new URL(this.#resource)
  }
}

// The upstream knows the configured resource only (any other is invalid_target there), and the gateway forwards it.
let mcpResource = ''
const stack = await startStack({
  upstream: { resources: (resource) => resource === mcpResource },
  config: (file) => ({ ...file, upstream: { ...file.upstream, resource: 'forward' }, consent: { trustedRedirectUris: ['https://chatgpt.com/connector/oauth/*'] } }),
})
mcpResource = stack.mcpUrl
t.teardown(() => stack.close())
const originRoot = `${new URL(stack.mcpUrl).origin}/`

/** Every resource the upstream was sent since `from`, on authorize and token. */
const upstreamResources = (from: number) => stack.upstream.requests.slice(from).map((request) => request.params.resource).filter((resource) => resource !== undefined)

async function whoamiWith(accessToken: string): Promise<string> {
  const client = new Client({ name: 'chatgpt-like', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } }))
  try {
    return textOf(await client.callTool({ name: 'whoami', arguments: {} }))
  } finally {
    await client.close()
  }
}

for (const [variant, resource] of [['the origin root', originRoot], ['a trailing slash', `${stack.mcpUrl}/`]] as const) {
  t.test(`the SDK client sending ${variant} connects, refreshes and calls tools`, async (t) => {
    const from = stack.upstream.requests.length
    const connection = await connectWithSdk(stack, new ResourceChoosingProvider(CHATGPT_REDIRECT, resource))
    t.equal(connection.authorizationUrl.searchParams.get('resource'), resource, `the SDK sent ${resource}`)
    t.match(connection.whoami, /^signed in as /)
    t.match(connection.whoamiAfterRefresh, /^signed in as /)
    const sent = upstreamResources(from)
    t.ok(sent.length >= 3, 'the upstream was sent a resource on authorize, code exchange and refresh')
    t.same([...new Set(sent)], [stack.mcpUrl], 'always the configured resource, canonical')
  })

  t.test(`a ChatGPT-like client sending ${variant} on authorize, token and refresh`, async (t) => {
    const client = await registerClient(stack)
    const obtained = await obtainCode(stack, client, { resource })
    const exchanged = await postForm(`${stack.gatewayUrl}/token`, {
      grant_type: 'authorization_code',
      code: obtained.code,
      code_verifier: obtained.verifier,
      redirect_uri: CHATGPT_REDIRECT,
      client_id: client.client_id,
      resource,
    })
    t.equal(exchanged.status, 200, 'code exchanged')
    const tokens = (await exchanged.json()) as Tokens
    t.match(await whoamiWith(tokens.access_token), /^signed in as /, 'the MCP server accepts the access token')
    const refreshed = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id, resource })
    t.equal(refreshed.status, 200, 'refreshed')
    t.match(await whoamiWith(((await refreshed.json()) as Tokens).access_token), /^signed in as /, 'and the refreshed one')
  })
}

const accepted = (s: Stack) => `${s.mcpUrl}, with or without a trailing slash, or its origin root ${new URL(s.mcpUrl).origin}/`

t.test('a foreign resource is refused at /authorize, back to the client', async (t) => {
  const client = await registerClient(stack)
  const { challenge } = pkcePair()
  for (const foreign of ['https://evil.example.com/mcp', `${stack.mcpUrl}/tools`, `${new URL(stack.mcpUrl).origin}/other`]) {
    const response = await fetch(authorizeUrl(stack, client, challenge, { resource: foreign }), { redirect: 'manual' })
    t.equal(response.status, 302, `${foreign}: back to the client`)
    const location = new URL(response.headers.get('location')!)
    t.equal(location.origin + location.pathname, CHATGPT_REDIRECT)
    t.equal(location.searchParams.get('error'), 'invalid_target', `${foreign}: invalid_target`)
    t.equal(location.searchParams.get('error_description'), `resource: must name the protected MCP server: ${accepted(stack)} (RFC 8707 section 2), not ${foreign}`)
    t.equal(location.searchParams.get('code'), null, 'no code')
  }
})

t.test('a foreign resource is refused at /token, for a code and for a refresh', async (t) => {
  const client = await registerClient(stack)
  const obtained = await obtainCode(stack, client)
  const foreign = 'https://evil.example.com/mcp'
  const refused = await postForm(`${stack.gatewayUrl}/token`, {
    grant_type: 'authorization_code',
    code: obtained.code,
    code_verifier: obtained.verifier,
    redirect_uri: CHATGPT_REDIRECT,
    client_id: client.client_id,
    resource: foreign,
  })
  const body = await failsWith(t, refused, 400, 'invalid_target')
  t.equal(body.error_description, `resource: must name the protected MCP server: ${accepted(stack)} (RFC 8707 section 2), not ${foreign}`)

  const tokens = await exchangeCode(stack, client, obtained)
  const refresh = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id, resource: foreign })
  await failsWith(t, refresh, 400, 'invalid_target')
})

t.test('with acceptOriginRootResource off, the origin root is refused and the trailing slash still accepted', async (t) => {
  const strict = await startStack({
    config: (file) => ({ ...file, upstream: { ...file.upstream, acceptOriginRootResource: false }, consent: { trustedRedirectUris: ['https://chatgpt.com/connector/oauth/*'] } }),
  })
  t.teardown(() => strict.close())
  const root = `${new URL(strict.mcpUrl).origin}/`
  const client = await registerClient(strict)
  const { challenge } = pkcePair()
  const response = await fetch(authorizeUrl(strict, client, challenge, { resource: root }), { redirect: 'manual' })
  const location = new URL(response.headers.get('location')!)
  t.equal(location.searchParams.get('error'), 'invalid_target')
  t.equal(location.searchParams.get('error_description'), `resource: must name the protected MCP server: ${strict.mcpUrl}, with or without a trailing slash (RFC 8707 section 2), not ${root}`)

  const obtained = await obtainCode(strict, client, { resource: `${strict.mcpUrl}/` })
  const exchanged = await postCodeExchange(strict, client, obtained)
  t.equal(exchanged.status, 200, 'the trailing slash passes')
})
