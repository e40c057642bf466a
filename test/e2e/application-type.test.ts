/**
 * End to end: `application_type` at registration (SEP-837), for each label
 * (web, native, none) and each redirect kind (https, loopback, a custom
 * scheme, mixed), including Cursor's real body (`web` with cursor://). The
 * answer names the settled type, a mislabelled one is corrected (and logged
 * once), never refused; the client keeps it, and the consent page words the
 * destination by it.
 */
import t from 'tap'
import { CookieBrowser } from '../support/browser.ts'
import { authorizeUrl, pkcePair, postJson, type RegisteredClient } from '../support/flow.ts'
import { capturedLog } from '../support/log-capture.ts'
import { failsWith, startStack } from '../support/stack.ts'

const log = capturedLog()
const stack = await startStack({
  logger: log.logger,
  config: (file) => ({ ...file, redirectPresets: { cursor: true, loopback: true, claude: true }, allowedRedirectUris: ['https://app.example.com/oauth/callback'] }),
})
t.teardown(() => stack.close())

const CURSOR = 'cursor://anysphere.cursor-mcp/oauth/callback'
const LOOPBACK = 'http://127.0.0.1:43117/callback'
const CLAUDE = 'https://claude.ai/api/mcp/auth_callback'
const CLAIMED = 'https://app.example.com/oauth/callback'

function register(body: Record<string, unknown>) {
  return postJson(`${stack.gatewayUrl}/register`, { client_name: 'Typed', token_endpoint_auth_method: 'none', ...body })
}

const cases: Array<[string, Record<string, unknown>, 'web' | 'native', boolean]> = [
  // [name, body, answered type, corrected]
  ['Cursor\'s body: web with cursor://', { client_name: 'Cursor', application_type: 'web', redirect_uris: [CURSOR] }, 'native', true],
  ['web on loopback', { application_type: 'web', redirect_uris: [LOOPBACK] }, 'native', true],
  ['web on loopback and a custom scheme', { application_type: 'web', redirect_uris: [LOOPBACK, CURSOR] }, 'native', true],
  ['web on https', { application_type: 'web', redirect_uris: [CLAUDE] }, 'web', false],
  ['web on https and loopback', { application_type: 'web', redirect_uris: [CLAUDE, LOOPBACK] }, 'web', false],
  ['native on a custom scheme', { application_type: 'native', redirect_uris: [CURSOR] }, 'native', false],
  ['native on loopback', { application_type: 'native', redirect_uris: [LOOPBACK] }, 'native', false],
  ['native on an https address it claims', { application_type: 'native', redirect_uris: [CLAIMED] }, 'native', false],
  ['no label, a custom scheme', { redirect_uris: [CURSOR] }, 'native', false],
  ['no label, loopback', { redirect_uris: [LOOPBACK] }, 'native', false],
  ['no label, https', { redirect_uris: [CLAUDE] }, 'web', false],
  ['no label, https and loopback', { redirect_uris: [CLAUDE, LOOPBACK] }, 'web', false],
]

const corrections = () => log.parsed().filter((line) => line.outcome === 'application_type_corrected')

for (const [name, body, type, corrected] of cases) {
  t.test(`${name}: answered ${type}${corrected ? ' (corrected)' : ''}`, async (t) => {
    const before = corrections().length
    const response = await register(body)
    t.equal(response.status, 201, 'registered, never refused')
    const registered = (await response.json()) as RegisteredClient & { application_type: string }
    t.equal(registered.application_type, type)
    const logged = corrections().slice(before)
    t.equal(logged.length, corrected ? 1 : 0, corrected ? 'the correction is logged once' : 'nothing to correct')
    if (corrected) {
      t.match(logged[0], { step: 'register', sent: 'web', answered: 'native', msg: 'application_type web corrected to native: every redirect URI is loopback or a custom scheme' })
      t.ok(logged[0]!.client?.handle, 'naming the client')
    }
  })
}

t.test('native on plain http off loopback is still refused', async (t) => {
  const body = await failsWith(t, await register({ application_type: 'native', redirect_uris: ['http://app.example.com/oauth/callback'] }), 400, 'invalid_redirect_uri')
  t.match(body.error_description, /redirect_uris\[0\]/)
})

t.test('an application_type that is neither web nor native is invalid_client_metadata', async (t) => {
  const body = await failsWith(t, await register({ application_type: 'desktop', redirect_uris: [CURSOR] }), 400, 'invalid_client_metadata')
  t.match(body.error_description, /^application_type: /)
})

/** The consent page's destination words for a client. */
async function destinationOn(client: RegisteredClient, redirectUri: string) {
  const page = await (await new CookieBrowser().get(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri }))).text()
  return /<h2 id="destination-heading">[\s\S]*?<p class="hint">([^:]*):/.exec(page)?.[1]
}

t.test('the consent page words the destination by the settled type', async (t) => {
  const cursor = (await (await register({ client_name: 'Cursor', application_type: 'web', redirect_uris: [CURSOR] })).json()) as RegisteredClient
  t.equal(await destinationOn(cursor, CURSOR), 'an app installed on this device', 'Cursor, labelled web: an app, not a website')
  const claimed = (await (await register({ application_type: 'native', redirect_uris: [CLAIMED] })).json()) as RegisteredClient
  t.equal(await destinationOn(claimed, CLAIMED), 'an app on this device, through this web address', 'a native app on an https address it claims')
  const web = (await (await register({ application_type: 'web', redirect_uris: [CLAIMED] })).json()) as RegisteredClient
  t.equal(await destinationOn(web, CLAIMED), 'a website', 'the same address for a web client')
  const loopback = (await (await register({ redirect_uris: [LOOPBACK] })).json()) as RegisteredClient
  t.equal(await destinationOn(loopback, LOOPBACK), 'an app on this computer')
})
