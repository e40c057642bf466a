/**
 * End to end: what real clients do that a plain OAuth server answers with
 * invalid_grant, absorbed. ChatGPT posts its code exchange twice; clients
 * refresh one token concurrently or retry a refresh whose answer they lost,
 * against an upstream that rotates refresh tokens and revokes the grant when
 * an old one comes back; a client whose registration the gateway no longer
 * knows must be told so (401 invalid_client) that the SDK registers again.
 */
import t from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { buildGateway } from '../../gateway/app.ts'
import { ClientRegistry } from '../../gateway/clients/registry.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { MemoryStore, type Store } from '../../gateway/state/store.ts'
import { exchangeCode, obtainCode, pkcePair, postForm, registerClient, type RegisteredClient } from '../support/flow.ts'
import { ConnectorProvider, mcpClient, transportFor } from '../support/mcp-client.ts'
import { freePort } from '../support/ports.ts'
import { connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, type Stack } from '../support/stack.ts'

/** A MemoryStore that keeps a copy of everything written to it, to check what a shared store would hold. */
class RecordingStore extends MemoryStore {
  readonly writes: Array<{ key: string; value: string }> = []
  override async set(key: string, value: string, ttlSeconds: number) {
    this.writes.push({ key, value })
    return super.set(key, value, ttlSeconds)
  }
  override async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    this.writes.push({ key, value })
    return super.setIfAbsent(key, value, ttlSeconds)
  }
}

const store = new RecordingStore()
const stack = await startStack({ store })
t.teardown(() => stack.close())
const tokenUrl = `${stack.gatewayUrl}/token`

type Asserts = Pick<typeof t, 'equal' | 'ok' | 'match'>

function codeFields(client: RegisteredClient, code: string, verifier: string): Record<string, string> {
  return { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }
}

function refreshFields(client: RegisteredClient, refreshToken: string): Record<string, string> {
  return { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id, resource: stack.mcp.url }
}

async function succeeds(t: Asserts, response: Response) {
  t.equal(response.status, 200, 'status 200')
  return (await response.json()) as { access_token: string; refresh_token: string; expires_in: number; token_type: string }
}

/** How many token requests of a grant type reached the upstream. */
function upstreamTokenCalls(on: Stack, grantType: string) {
  return on.upstream.requests.filter((request) => request.path === '/token' && request.params.grant_type === grantType).length
}

t.test('a duplicate code exchange (ChatGPT posts twice)', async (t) => {
  t.test('posted again after the first answer: the same answer, one upstream exchange', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const before = upstreamTokenCalls(stack, 'authorization_code')
    const first = await succeeds(t, await postForm(tokenUrl, codeFields(client, code, verifier)))
    const second = await succeeds(t, await postForm(tokenUrl, codeFields(client, code, verifier)))
    t.same(second, first, 'the second answer is the first, byte for byte')
    t.equal(upstreamTokenCalls(stack, 'authorization_code') - before, 1, 'the upstream saw the code once')
    await succeeds(t, await postForm(tokenUrl, refreshFields(client, first.refresh_token)))
  })

  t.test('posted three times at once: every one waits for the first answer', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const before = upstreamTokenCalls(stack, 'authorization_code')
    const responses = await Promise.all([1, 2, 3].map(() => postForm(tokenUrl, codeFields(client, code, verifier))))
    const answers = await Promise.all(responses.map((response) => succeeds(t, response)))
    t.same(answers[1], answers[0])
    t.same(answers[2], answers[0])
    t.equal(upstreamTokenCalls(stack, 'authorization_code') - before, 1, 'the upstream saw the code once')
  })

  t.test('any other reuse is invalid_grant and revokes nothing that was issued', async (t) => {
    const client = await registerClient(stack)
    const other = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const first = await succeeds(t, await postForm(tokenUrl, codeFields(client, code, verifier)))

    const wrongVerifier = await failsWith(t, await postForm(tokenUrl, codeFields(client, code, pkcePair().verifier)), 400, 'invalid_grant')
    t.match(wrongVerifier.error_description, /code_verifier/, 'another verifier: the description names code_verifier')
    const otherClient = await failsWith(t, await postForm(tokenUrl, codeFields(other, code, verifier)), 400, 'invalid_grant')
    t.match(otherClient.error_description, /another client/, 'another client: the description says so')

    // What was legitimately issued still works: the upstream grant was not revoked.
    const refreshed = await succeeds(t, await postForm(tokenUrl, refreshFields(client, first.refresh_token)))
    t.ok(refreshed.access_token)
  })

  t.test('the remembered answer is sealed in the store, under a hash of the code', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const answer = await succeeds(t, await postForm(tokenUrl, codeFields(client, code, verifier)))
    const written = JSON.stringify(store.writes)
    t.notOk(written.includes(answer.access_token), 'no access token in plain text')
    t.notOk(written.includes(answer.refresh_token), 'no refresh token in plain text')
    t.notOk(written.includes(code), 'no code, not even as a key')
    t.ok(store.writes.some((write) => write.key.startsWith('code-answer:')), 'an answer was remembered')
  })
})

t.test('concurrent refreshes of one refresh token (the upstream rotates)', async (t) => {
  t.test('four at once: one upstream call, one answer for all, and the new token works', async (t) => {
    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    const before = upstreamTokenCalls(stack, 'refresh_token')
    const responses = await Promise.all([1, 2, 3, 4].map(() => postForm(tokenUrl, refreshFields(client, tokens.refresh_token!))))
    const answers = await Promise.all(responses.map((response) => succeeds(t, response)))
    for (const answer of answers.slice(1)) t.same(answer, answers[0], 'the same answer')
    t.equal(upstreamTokenCalls(stack, 'refresh_token') - before, 1, 'the upstream saw the refresh token once')
    // Had a second call reached the upstream with the rotated token, it would have revoked the grant.
    const next = await succeeds(t, await postForm(tokenUrl, refreshFields(client, answers[0]!.refresh_token)))
    t.not(next.access_token, answers[0]!.access_token, 'the rotated refresh token refreshes again')
  })

  t.test('a retry after a lost answer gets that answer', async (t) => {
    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    const lost = await succeeds(t, await postForm(tokenUrl, refreshFields(client, tokens.refresh_token!)))
    const retried = await succeeds(t, await postForm(tokenUrl, refreshFields(client, tokens.refresh_token!)))
    t.same(retried, lost, 'the same answer again, not invalid_grant')
    await succeeds(t, await postForm(tokenUrl, refreshFields(client, retried.refresh_token)))
  })

  t.test('across two replicas sharing the store: still one upstream call', async (t) => {
    // A second gateway with the same configuration and store, as a second replica behind a load balancer.
    // Closing the replica must not clear the store under the first gateway: it gets a view without close().
    const view: Store = {
      useOnce: (key, ttl) => store.useOnce(key, ttl),
      setIfAbsent: (key, value, ttl) => store.setIfAbsent(key, value, ttl),
      set: (key, value, ttl) => store.set(key, value, ttl),
      get: (key) => store.get(key),
      delete: (key) => store.delete(key),
      notReadyBecause: () => store.notReadyBecause(),
      close: async () => undefined,
    }
    const replica = await buildGateway({ config: stack.config, store: view })
    const port = await freePort()
    await replica.listen({ port, host: '127.0.0.1' })
    t.teardown(() => replica.close())

    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    const before = upstreamTokenCalls(stack, 'refresh_token')
    const urls = [tokenUrl, `http://127.0.0.1:${port}/token`, tokenUrl, `http://127.0.0.1:${port}/token`]
    const responses = await Promise.all(urls.map((url) => postForm(url, refreshFields(client, tokens.refresh_token!))))
    const answers = await Promise.all(responses.map((response) => succeeds(t, response)))
    for (const answer of answers.slice(1)) t.same(answer, answers[0], 'the same answer from both replicas')
    t.equal(upstreamTokenCalls(stack, 'refresh_token') - before, 1, 'the upstream saw the refresh token once')
  })

  t.test('the same token with another scope while the answer is remembered is invalid_grant, and nothing is revoked', async (t) => {
    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    const first = await succeeds(t, await postForm(tokenUrl, refreshFields(client, tokens.refresh_token!)))
    const narrower = await failsWith(t, await postForm(tokenUrl, { ...refreshFields(client, tokens.refresh_token!), scope: 'openid' }), 400, 'invalid_grant')
    t.match(narrower.error_description, /refresh_token: was used a moment ago with another scope/)
    await succeeds(t, await postForm(tokenUrl, refreshFields(client, first.refresh_token)))
  })

  t.test('the SDK client refreshing twice at once keeps working', async (t) => {
    const provider = new ConnectorProvider(CHATGPT_REDIRECT)
    await connectWithSdk(stack, provider)
    const saved = provider.saved!
    const twin = new ConnectorProvider(CHATGPT_REDIRECT)
    Object.assign(twin, { client: provider.client, saved, discovered: provider.discovered })
    const results = await Promise.all([auth(provider, { serverUrl: stack.mcp.url }), auth(twin, { serverUrl: stack.mcp.url })])
    t.same(results, ['AUTHORIZED', 'AUTHORIZED'], 'both refreshes succeed')
    t.equal(provider.saved!.access_token, twin.saved!.access_token, 'with the same tokens')
  })
})

t.test('a client_id the gateway no longer knows: 401 invalid_client, and the SDK registers again', async (t) => {
  // Sealed under a key the gateway does not have: what a client holds after the gateway's secret was rotated away.
  const stale = new ClientRegistry(new Sealer(['a-retired-gateway-secret-0123456789abcdef'])).register({
    redirect_uris: [CHATGPT_REDIRECT],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    client_name: 'ChatGPT',
  })!.client
  const refused = await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: 'whatever', client_id: stale.client_id })
  const challenge = refused.headers.get('www-authenticate')
  const body = await failsWith(t, refused, 401, 'invalid_client')
  t.match(challenge, /^Basic /, 'with a challenge')
  t.match(body.error_description, /client_id: unknown to this gateway .*register the client again/)

  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  provider.client = { ...stale, issuer: stack.gatewayUrl } as typeof provider.client
  provider.saved = { access_token: 'expired', token_type: 'Bearer', refresh_token: 'stale-refresh-token', issuer: stack.gatewayUrl } as typeof provider.saved
  // The client connects with what it holds; the MCP server's 401 starts the SDK's auth: a refresh with the stale client.
  await t.rejects(mcpClient().connect(transportFor(stack.mcp.url, provider)), { message: 'Unauthorized' }, 'the SDK ends up starting a new authorization')
  t.not(provider.client?.client_id, stale.client_id, 'with a new registration')
  t.equal(provider.lastAuthorizationUrl?.searchParams.get('client_id'), provider.client?.client_id, 'the authorization uses the new client_id')
  const connection = await connectWithSdk(stack, provider)
  t.equal(connection.whoami, 'signed in as np-user-1001', 'and the new registration connects')
})
