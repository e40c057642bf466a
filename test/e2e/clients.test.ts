/**
 * End to end, for every preset client: the complete flow with that client's
 * real redirect URI, registration body and token authentication method
 * (/work/shared/CLIENTS.md), driven by the official MCP SDK client against the
 * gateway with the shipped presets and the oidc-provider upstream, ending in
 * tool calls before and after a refresh. The browser stops at the client's
 * redirect URI and reads the code from it, as the client would.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { CookieBrowser, consentForm } from '../support/browser.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { freePort } from '../support/ports.ts'
import { connectWithSdk } from '../support/sdk-flow.ts'
import { startStack } from '../support/stack.ts'

const shipped = parse(readFileSync(new URL('../../config/gateway.yaml', import.meta.url), 'utf8')) as { redirectPresets: Record<string, boolean> }
// The shipped presets and nothing else: what ops deploy is what lets these clients in.
const stack = await startStack({ config: (file) => ({ ...file, redirectPresets: shipped.redirectPresets, allowedRedirectUris: [] }) })
t.teardown(() => stack.close())

const callbackPort = await freePort()
const vscodeRedirects = ['https://insiders.vscode.dev/redirect', 'https://vscode.dev/redirect', 'http://127.0.0.1/', 'http://127.0.0.1:33418/']

interface ClientCase {
  name: string
  /** The redirect URI this connection uses. */
  redirectUrl: string
  /** The client's registration body (RFC 7591) beyond redirect_uris. */
  registration: Record<string, unknown>
  redirectUris?: string[]
  /** What the client does to the authorization URL the SDK builds (ChatGPT sends `scope=`). */
  bend?: (url: URL) => void
  /** The application_type the registration answer names (SEP-837): the client's label, corrected or inferred from its redirect URIs. */
  applicationType: 'web' | 'native'
}

const clients: ClientCase[] = [
  {
    name: 'ChatGPT connector',
    redirectUrl: 'https://chatgpt.com/connector/oauth/c_6745f1a2b3',
    registration: { client_name: 'ChatGPT', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    bend: (url) => url.searchParams.set('scope', ''),
    applicationType: 'web',
  },
  {
    name: 'ChatGPT, legacy connector redirect',
    redirectUrl: 'https://chatgpt.com/connector_platform_oauth_redirect',
    registration: { client_name: 'ChatGPT', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'ChatGPT GPT Action',
    redirectUrl: 'https://chat.openai.com/aip/g-a1b2c3d4e5/oauth/callback',
    registration: { client_name: 'ChatGPT', token_endpoint_auth_method: 'client_secret_post', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'ChatGPT GPT Action on chatgpt.com',
    redirectUrl: 'https://chatgpt.com/aip/g-a1b2c3d4e5/oauth/callback',
    registration: { client_name: 'ChatGPT', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'Claude',
    redirectUrl: 'https://claude.ai/api/mcp/auth_callback',
    registration: { client_name: 'Claude', token_endpoint_auth_method: 'none', application_type: 'web', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'Claude on claude.com',
    redirectUrl: 'https://claude.com/api/mcp/auth_callback',
    registration: { client_name: 'Claude', token_endpoint_auth_method: 'none', application_type: 'web', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'Claude Code (loopback /callback, random port)',
    redirectUrl: `http://localhost:${callbackPort}/callback`,
    registration: { client_name: 'Claude Code', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'native',
  },
  {
    name: 'VS Code (loopback 33418)',
    redirectUrl: 'http://127.0.0.1:33418/',
    redirectUris: vscodeRedirects,
    registration: { client_name: 'Visual Studio Code', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'VS Code (loopback fallback port)',
    redirectUrl: `http://127.0.0.1:${callbackPort}/`,
    redirectUris: vscodeRedirects,
    registration: { client_name: 'Visual Studio Code', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'VS Code for the web (vscode.dev)',
    redirectUrl: 'https://vscode.dev/redirect',
    redirectUris: vscodeRedirects,
    registration: { client_name: 'Visual Studio Code', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'VS Code Insiders for the web',
    redirectUrl: 'https://insiders.vscode.dev/redirect',
    redirectUris: vscodeRedirects,
    registration: { client_name: 'Visual Studio Code - Insiders', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'web',
  },
  {
    name: 'Cursor (custom scheme)',
    redirectUrl: 'cursor://anysphere.cursor-mcp/oauth/callback',
    registration: { client_name: 'Cursor', token_endpoint_auth_method: 'none', application_type: 'web', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'native',
  },
  {
    name: 'MCP Inspector',
    redirectUrl: 'http://localhost:6274/oauth/callback',
    registration: { client_name: 'MCP Inspector', client_uri: 'https://github.com/modelcontextprotocol/inspector', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'native',
  },
  {
    name: 'MCP Inspector, debug flow',
    redirectUrl: 'http://localhost:6274/oauth/callback/debug',
    registration: { client_name: 'MCP Inspector', client_uri: 'https://github.com/modelcontextprotocol/inspector', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
    applicationType: 'native',
  },
]

for (const client of clients) {
  t.test(`${client.name} connects, calls a tool, refreshes and calls again`, async (t) => {
    const provider = new ConnectorProvider(client.redirectUrl, { ...client.registration, redirect_uris: client.redirectUris ?? [client.redirectUrl] })
    const connection = await connectWithSdk(stack, provider, { bendAuthorizationUrl: client.bend })

    const registered = provider.client as Record<string, unknown> | undefined
    t.equal(registered?.token_endpoint_auth_method, client.registration.token_endpoint_auth_method, 'registered with its own token auth method')
    t.equal(Boolean(registered?.client_secret), client.registration.token_endpoint_auth_method !== 'none', 'a secret only for a confidential client')
    t.same(registered?.redirect_uris, client.redirectUris ?? [client.redirectUrl], 'its redirect URIs registered as sent')
    t.equal(connection.authorizationUrl.searchParams.get('redirect_uri'), client.redirectUrl)
    const back = connection.redirect
    t.equal(`${back.protocol}//${back.host}${back.pathname}`, client.redirectUrl, 'the browser comes back to the client')
    t.equal(back.searchParams.get('state'), provider.state(), 'with its state')
    t.equal(back.searchParams.get('iss'), stack.gatewayUrl, 'and the gateway as issuer (RFC 9207)')

    t.ok(connection.tokens.access_token, 'an access token')
    t.ok(connection.tokens.refresh_token, 'a refresh token')
    t.type(connection.tokens.expires_in, 'number', 'expires_in is a number')
    t.equal(connection.whoami, 'signed in as np-user-1001', 'the tool call works with the token')
    t.not(connection.refreshed.access_token, connection.tokens.access_token, 'the refresh gives a new access token')
    t.equal(connection.whoamiAfterRefresh, 'signed in as np-user-1001', 'and the tool call works after it')
  })
}

t.test('an empty scope= means the default scopes, for every client', async (t) => {
  for (const client of clients) {
    const provider = new ConnectorProvider(client.redirectUrl, { ...client.registration, redirect_uris: client.redirectUris ?? [client.redirectUrl] })
    const registration = await fetch(`${stack.gatewayUrl}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(provider.clientMetadata),
    })
    t.equal(registration.status, 201, `${client.name} registers`)
    const { client_id: clientId, application_type: applicationType } = (await registration.json()) as { client_id: string; application_type: string }
    // The SDK keeps only the fields it knows, so the answer is read here.
    t.equal(applicationType, client.applicationType, `${client.name}: answered as a ${client.applicationType} client (SEP-837)`)
    const authorize = new URL('/authorize', stack.gatewayUrl)
    for (const [name, value] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: client.redirectUrl, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', scope: '' })) {
      authorize.searchParams.set(name, value)
    }
    // The consent page comes first (it names the scopes); approving sends the browser upstream.
    const browser = new CookieBrowser()
    const page = await browser.get(authorize)
    t.equal(page.status, 200, `${client.name}: no invalid_scope, the consent page`)
    const consent = consentForm(await page.text())!
    const approved = await browser.postForm(new URL(consent.action, stack.gatewayUrl), { ...consent.fields, decision: 'approve' })
    const upstream = new URL(approved.headers.get('location')!)
    t.equal(upstream.origin, new URL(stack.upstream.issuer).origin, `${client.name}: sent on to the upstream`)
    t.equal(upstream.searchParams.get('scope'), stack.config.scopes.default.join(' '), `${client.name}: with the default scopes`)
  }
})
