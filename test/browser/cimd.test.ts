/**
 * End to end, ChatGPT-style: the official MCP SDK client identifies itself by
 * the URL of its Client ID Metadata Document (served by the test on loopback,
 * development switch on) and authenticates with private_key_jwt; Chromium goes
 * through the consent page (which names the document's host) and the stand-in
 * NeonPanel sign-in to the client's redirect URI; the SDK exchanges the code
 * and calls a tool on the MCP server.
 */
import t from 'tap'
import { join } from 'node:path'
import { exportJWK, generateKeyPair } from 'jose'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { createPrivateKeyJwtAuth } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import type { AddClientAuthentication } from '@modelcontextprotocol/sdk/client/auth.js'
import { launchChromium, screenshotDirectory } from '../support/chromium.ts'
import { landingPage, startClientSite } from '../support/client-site.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { startStack } from '../support/stack.ts'

const stack = await startStack({ config: (file) => ({ ...file, clientMetadataDocuments: { developmentAllowLoopback: true } }) })
const site = await startClientSite()
site.on('/callback', landingPage)
const browser = await launchChromium()
const shots = screenshotDirectory(t, 'cimd')
t.teardown(async () => {
  await browser.close()
  await site.close()
  await stack.close()
})

/** A connector that names its metadata document instead of registering, as ChatGPT does. */
class DocumentConnector extends ConnectorProvider {
  clientMetadataUrl?: string
  addClientAuthentication?: AddClientAuthentication
}

t.test('the SDK uses a metadata document URL as client_id because the gateway advertises support', async (t) => {
  const connector = new DocumentConnector(`${site.url}/callback`)
  connector.clientMetadataUrl = 'https://connector.example/oauth/client.json'
  await t.rejects(mcpClient().connect(transportFor(stack.mcp.url, connector)), { message: 'Unauthorized' })
  t.equal(connector.lastAuthorizationUrl?.searchParams.get('client_id'), connector.clientMetadataUrl, 'client_id is the document URL')
  t.equal(connector.client?.client_id, connector.clientMetadataUrl, 'no dynamic registration')
})

t.test('a document client with private_key_jwt signs in through consent and calls a tool', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const clientId = `${site.url}/oauth/client.json`
  const redirectUri = `${site.url}/callback`
  site.json('/oauth/jwks.json', { keys: [{ ...(await exportJWK(publicKey)), kid: 'connector-1', alg: 'ES256', use: 'sig' }] }, { 'cache-control': 'max-age=300' })
  site.json('/oauth/client.json', {
    client_id: clientId,
    client_name: 'Loopback Connector',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks_uri: `${site.url}/oauth/jwks.json`,
  }, { 'cache-control': 'max-age=300' })

  // The SDK accepts only https document URLs, so the loopback document is given as known client information.
  const connector = new DocumentConnector(redirectUri)
  connector.client = { client_id: clientId }
  connector.addClientAuthentication = createPrivateKeyJwtAuth({ issuer: clientId, subject: clientId, privateKey: await exportJWK(privateKey), alg: 'ES256' })
  await t.rejects(mcpClient().connect(transportFor(stack.mcp.url, connector)), { message: 'Unauthorized' })
  const authorizationUrl = connector.lastAuthorizationUrl!
  t.equal(authorizationUrl.searchParams.get('client_id'), clientId)

  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  await page.goto(authorizationUrl.href)
  await t.resolves(page.getByRole('heading', { level: 1, name: 'Connect Loopback Connector to your NeonPanel account?' }).waitFor(), 'the document\'s client_name')
  t.match(await page.locator('main').textContent(), new RegExp(`Verified publisher: ${new URL(site.url).host.replace('.', '\\.')}`), 'the publishing host')
  t.equal(await page.locator('#redirect-host').textContent(), new URL(redirectUri).host)
  await page.screenshot({ path: join(shots, 'consent-document-client.png'), fullPage: true })
  await page.getByRole('button', { name: 'Approve' }).click()
  await page.waitForURL((url) => url.href.startsWith(stack.upstream.issuer))
  await page.getByLabel('Email').fill(stack.upstream.account.username)
  await page.getByLabel('Password').fill(stack.upstream.account.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL((url) => url.href.startsWith(redirectUri))
  const landed = new URL(page.url())
  t.equal(landed.searchParams.get('state'), connector.state())
  t.equal(landed.searchParams.get('iss'), stack.gatewayUrl)

  t.equal(await auth(connector, { serverUrl: stack.mcp.url, authorizationCode: landed.searchParams.get('code')! }), 'AUTHORIZED', 'the code exchange, signed with private_key_jwt')
  const client = mcpClient()
  await client.connect(transportFor(stack.mcp.url, connector))
  t.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')
  await client.close()
  t.equal(await auth(connector, { serverUrl: stack.mcp.url }), 'AUTHORIZED', 'and a refresh')
})
