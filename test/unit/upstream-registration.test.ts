/** Reading the upstream's RFC 7591 answer, and sealing the upstream client into the gateway client id. */
import t, { type Test } from 'tap'
import { ClientRegistry } from '../../gateway/clients/registry.ts'
import { OAuthError } from '../../gateway/errors.ts'
import { Sealer, nowSeconds } from '../../gateway/state/seal.ts'
import { readRegistrationResponse, upstreamClientMetadata } from '../../gateway/upstream/registration.ts'

const CALLBACK = 'https://oauth.example.com/callback'

const answer = (status: number, body: unknown, type = 'application/json') =>
  new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': type } })

async function refused(t: Test, response: Response, status: number, error: string, description: RegExp) {
  const err = await readRegistrationResponse(response, CALLBACK, 'client_secret_basic').then(
    () => undefined,
    (caught: unknown) => caught,
  )
  t.type(err, OAuthError)
  t.match(err, { status, error, message: description })
}

t.test('the gateway asks for its callback, the client name and grants, nothing else the client chose', async (t) => {
  t.same(upstreamClientMetadata({ client_name: 'Claude', grant_types: ['authorization_code', 'refresh_token'] }, CALLBACK, 'client_secret_post'), {
    redirect_uris: [CALLBACK],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    client_name: 'Claude',
  })
})

t.test('a registered client', async (t) => {
  t.same(
    await readRegistrationResponse(answer(201, { client_id: 'up-1', client_secret: 's', token_endpoint_auth_method: 'client_secret_basic', redirect_uris: [CALLBACK], client_secret_expires_at: 0 }), CALLBACK, 'client_secret_basic'),
    { clientId: 'up-1', clientSecret: 's', authMethod: 'client_secret_basic', expiresAt: undefined },
  )
  t.same(
    await readRegistrationResponse(answer(200, { client_id: 'up-2', client_secret: 's', client_secret_expires_at: 2_000_000_000 }), CALLBACK, 'client_secret_post'),
    { clientId: 'up-2', clientSecret: 's', authMethod: 'client_secret_post', expiresAt: 2_000_000_000 },
    'the requested method when the answer names none; the secret expiry kept',
  )
  t.same(
    await readRegistrationResponse(answer(201, { client_id: 'up-3' }), CALLBACK, 'client_secret_basic'),
    { clientId: 'up-3', clientSecret: undefined, authMethod: 'none', expiresAt: undefined },
    'a public client when the upstream gives no secret',
  )
})

t.test('answers the gateway cannot use', async (t) => {
  await refused(t, answer(201, { client_secret: 's' }), 502, 'server_error', /no client_id/)
  await refused(t, answer(201, { client_id: 'x', client_secret: 's', redirect_uris: ['https://elsewhere.example/cb'] }), 502, 'server_error', /without the gateway callback/)
  await refused(t, answer(201, { client_id: 'x', token_endpoint_auth_method: 'private_key_jwt' }), 502, 'server_error', /private_key_jwt.*cannot use/)
  await refused(t, answer(201, { client_id: 'x', token_endpoint_auth_method: 'client_secret_basic' }), 502, 'server_error', /without a secret/)
  await refused(t, answer(201, '<html>ok</html>', 'text/html'), 502, 'server_error', /no client_id/)
  await refused(t, answer(201, 'x'.repeat(70 * 1024)), 502, 'server_error', /larger than 64 KiB/)
})

t.test('refusals: the client hears about its metadata, everything else is a 502 or 503', async (t) => {
  await refused(t, answer(400, { error: 'invalid_client_metadata', error_description: 'client_name too long' }), 400, 'invalid_client_metadata', /refused the registration: client_name too long/)
  await refused(t, answer(400, { error: 'invalid_redirect_uri' }), 502, 'server_error', /refused the gateway callback/)
  await refused(t, answer(401, { error: 'invalid_token' }), 502, 'server_error', /UPSTREAM_REGISTRATION_TOKEN/)
  await refused(t, answer(403, ''), 502, 'server_error', /HTTP 403/)
  await refused(t, answer(503, { error: 'temporarily_unavailable' }), 503, 'temporarily_unavailable', /unavailable/)
  await refused(t, answer(500, '<html>Internal Server Error</html>', 'text/html'), 502, 'server_error', /not an OAuth error/)
  await refused(t, answer(500, { error: 'invalid_client_metadata' }), 502, 'server_error', /invalid_client_metadata/)
})

t.test('the gateway client id seals the upstream client, and ends with its secret', async (t) => {
  const clients = new ClientRegistry(new Sealer(['s'.repeat(32)]))
  const upstream = { clientId: 'up-client-id', clientSecret: 'up-client-secret', authMethod: 'client_secret_basic' as const }
  const metadata = { redirect_uris: ['https://claude.ai/api/mcp/auth_callback'], token_endpoint_auth_method: 'none' as const, grant_types: ['authorization_code'], upstream }
  const { client } = clients.register(metadata)!
  t.notOk(client.client_id.includes('up-client'), 'neither id nor secret can be read from the client id')
  const found = await clients.find(client.client_id)
  t.same(found.ok && found.client.upstream, upstream, 'the gateway opens it')

  const now = nowSeconds()
  const expiring = clients.register(metadata, now + 5)!
  t.ok((await clients.find(expiring.client.client_id)).ok, 'known while the upstream secret lives')
  const restore = t.capture(Date, 'now', () => (now + 10) * 1000).restore
  t.equal((await clients.find(expiring.client.client_id)).ok, false, 'unknown once it expired, so the client registers again')
  restore()
  const local = clients.register({ ...metadata, upstream: undefined })!
  const local_ = await clients.find(local.client.client_id)
  t.equal(local_.ok && local_.client.upstream, undefined, 'a local client has no upstream client')
})
