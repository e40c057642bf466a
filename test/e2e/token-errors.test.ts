/**
 * End to end: the token endpoint's refusals (RFC 6749 §5.2), with real gateway
 * codes obtained through the real upstream sign-in. Every answer, good or bad,
 * carries `Cache-Control: no-store` (§5.1); client authentication failures are
 * 401 with a challenge, never 500.
 */
import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { basicAuth, exchangeCode, obtainCode, pkcePair, postForm, registerClient, type RegisteredClient } from '../support/flow.ts'
import { CHATGPT_REDIRECT, failsWith, pastRetryWindow, startStack, type Stack } from '../support/stack.ts'

// A short retry window, so that a repeat after it can be tested without a long wait,
// yet long enough for the repeats within it to land there on a loaded machine.
const CODE_RETRY_SECONDS = 3
const stack = await startStack({ config: (file) => ({ ...file, lifetimes: { codeRetrySeconds: CODE_RETRY_SECONDS } }) })
t.teardown(() => stack.close())
const tokenUrl = `${stack.gatewayUrl}/token`

type Asserts = Pick<typeof t, 'equal' | 'ok' | 'match'>

function codeFields(client: RegisteredClient, code: string, verifier: string): Record<string, string> {
  return { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }
}

async function succeeds(t: Asserts, response: Response) {
  t.equal(response.status, 200, 'status 200')
  t.equal(response.headers.get('cache-control'), 'no-store', 'no-store')
  const body = (await response.json()) as { access_token?: string; refresh_token?: string; token_type?: string }
  t.ok(body.access_token, 'an access token')
  return body
}

async function invalidClient(t: Asserts, response: Response) {
  const challenge = response.headers.get('www-authenticate')
  await failsWith(t, response, 401, 'invalid_client')
  t.match(challenge, /^Basic /, 'with a WWW-Authenticate challenge')
}

t.test('authorization_code grant', async (t) => {
  t.test('a wrong code_verifier is invalid_grant', async (t) => {
    const client = await registerClient(stack)
    const { code } = await obtainCode(stack, client)
    await failsWith(t, await postForm(tokenUrl, codeFields(client, code, pkcePair().verifier)), 400, 'invalid_grant')
  })

  t.test('a code works once; a use after the retry window is invalid_grant', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const answer = await postForm(tokenUrl, codeFields(client, code, verifier))
    const answeredAt = Date.now()
    const first = await succeeds(t, answer)
    t.equal(first.token_type, 'Bearer')
    await pastRetryWindow(answeredAt, CODE_RETRY_SECONDS)
    const late = await failsWith(t, await postForm(tokenUrl, codeFields(client, code, verifier)), 400, 'invalid_grant')
    t.match(late.error_description, /code: was already used/, 'the description names the parameter and the rule')
    // The replay stopped at the gateway: had it reached the upstream, the upstream would have
    // revoked the grant (RFC 6749 §4.1.2) and the first answer's refresh token with it.
    await succeeds(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: first.refresh_token!, client_id: client.client_id }))
  })

  t.test('a code presented by another registered client is invalid_grant', async (t) => {
    const owner = await registerClient(stack)
    const other = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, owner)
    await failsWith(t, await postForm(tokenUrl, codeFields(other, code, verifier)), 400, 'invalid_grant')
    // Refused before it was spent: its own client still redeems it.
    await succeeds(t, await postForm(tokenUrl, codeFields(owner, code, verifier)))
  })

  t.test('a redirect_uri other than the authorization request\'s is invalid_grant', async (t) => {
    const client = await registerClient(stack, { redirect_uris: [CHATGPT_REDIRECT, 'https://chatgpt.com/connector/oauth/another'] })
    const { code, verifier } = await obtainCode(stack, client)
    const fields = { ...codeFields(client, code, verifier), redirect_uri: 'https://chatgpt.com/connector/oauth/another' }
    await failsWith(t, await postForm(tokenUrl, fields), 400, 'invalid_grant')
    const unregistered = { ...codeFields(client, code, verifier), redirect_uri: 'https://evil.example/cb' }
    await failsWith(t, await postForm(tokenUrl, unregistered), 400, 'invalid_grant')
  })

  t.test('the same code posted twice at once: both get the one answer', async (t) => {
    // ChatGPT has been seen sending its /token POST twice.
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const responses = await Promise.all([1, 2].map(() => postForm(tokenUrl, codeFields(client, code, verifier))))
    const [first, second] = [await succeeds(t, responses[0]!), await succeeds(t, responses[1]!)]
    t.equal(first.access_token, second.access_token, 'the same answer twice')
    // The duplicate did not reach the upstream, which would have revoked the grant.
    await succeeds(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: first.refresh_token!, client_id: client.client_id }))
  })

  t.test('a repeated parameter is invalid_request', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const fields = new URLSearchParams(codeFields(client, code, verifier))
    fields.append('code', code)
    await failsWith(t, await postForm(tokenUrl, fields), 400, 'invalid_request')
  })
})

t.test('client authentication', async (t) => {
  t.test('an unknown or garbage client_id is 401 invalid_client with a challenge', async (t) => {
    const { verifier } = pkcePair()
    for (const clientId of ['unknown-client', 'AAAAAA.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '<script>', 'x'.repeat(9000)]) {
      const fields = { grant_type: 'authorization_code', code: 'whatever', code_verifier: verifier, client_id: clientId }
      await invalidClient(t, await postForm(tokenUrl, fields))
    }
  })

  t.test('no client identification at all is 401 invalid_client', async (t) => {
    await invalidClient(t, await postForm(tokenUrl, { grant_type: 'authorization_code', code: 'whatever' }))
  })

  t.test('a client_secret_basic client must use Basic', async (t) => {
    const client = await registerClient(stack, { token_endpoint_auth_method: 'client_secret_basic' })
    t.ok(client.client_secret, 'the client has a secret')
    const { code, verifier } = await obtainCode(stack, client)
    const inBody = { ...codeFields(client, code, verifier), client_secret: client.client_secret! }
    await invalidClient(t, await postForm(tokenUrl, inBody))
    const withoutSecret = codeFields(client, code, verifier)
    await invalidClient(t, await postForm(tokenUrl, withoutSecret))

    const { client_id: _clientId, ...fields } = codeFields(client, code, verifier)
    await invalidClient(t, await postForm(tokenUrl, fields, { authorization: basicAuth(client.client_id, `${client.client_secret}x`) }))
    await invalidClient(t, await postForm(tokenUrl, fields, { authorization: basicAuth(client.client_id, '') }))
    // The refusals spent nothing: the right credentials still redeem the code.
    await succeeds(t, await postForm(tokenUrl, fields, { authorization: basicAuth(client.client_id, client.client_secret!) }))
  })

  t.test('a client_secret_post client must use the body', async (t) => {
    const client = await registerClient(stack, { token_endpoint_auth_method: 'client_secret_post' })
    const { code, verifier } = await obtainCode(stack, client)
    const { client_id: _clientId, ...fields } = codeFields(client, code, verifier)
    await invalidClient(t, await postForm(tokenUrl, fields, { authorization: basicAuth(client.client_id, client.client_secret!) }))
    await invalidClient(t, await postForm(tokenUrl, { ...codeFields(client, code, verifier), client_secret: 'wrong' }))
    await succeeds(t, await postForm(tokenUrl, { ...codeFields(client, code, verifier), client_secret: client.client_secret! }))
  })

  t.test('a public client presenting a secret is 401 invalid_client', async (t) => {
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    await invalidClient(t, await postForm(tokenUrl, { ...codeFields(client, code, verifier), client_secret: 'anything' }))
  })

  t.test('a malformed Authorization header is 401 invalid_client, never 500', async (t) => {
    const client = await registerClient(stack, { token_endpoint_auth_method: 'client_secret_basic' })
    const base64 = (text: string) => Buffer.from(text).toString('base64')
    const headers = {
      'not base64': 'Basic !!!not-base64!!!',
      'no credentials': 'Basic',
      'no colon': `Basic ${base64(client.client_id)}`,
      'bad percent-encoding': `Basic ${base64(`%zz:${client.client_secret}`)}`,
      'not UTF-8': `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0xc3]).toString('base64')}`,
      'another scheme': `Bearer ${base64(`${client.client_id}:${client.client_secret}`)}`,
      'garbage after the credentials': `Basic ${base64(`${client.client_id}:${client.client_secret}`)} extra`,
    }
    for (const [name, authorization] of Object.entries(headers)) {
      t.test(name, async (t) => {
        await invalidClient(t, await postForm(tokenUrl, { grant_type: 'authorization_code', code: 'whatever' }, { authorization }))
      })
    }
  })
})

t.test('grant types and parameters', async (t) => {
  const client = await registerClient(stack)

  t.test('a missing grant_type is invalid_request', async (t) => {
    await failsWith(t, await postForm(tokenUrl, { client_id: client.client_id, code: 'whatever' }), 400, 'invalid_request')
  })

  t.test('grant_type=password is unsupported_grant_type', async (t) => {
    const fields = { grant_type: 'password', username: 'demo@neonpanel.test', password: 'neonpanel-demo', client_id: client.client_id }
    await failsWith(t, await postForm(tokenUrl, fields), 400, 'unsupported_grant_type')
  })

  t.test('grant_type=client_credentials is unsupported_grant_type', async (t) => {
    await failsWith(t, await postForm(tokenUrl, { grant_type: 'client_credentials', client_id: client.client_id }), 400, 'unsupported_grant_type')
  })

  t.test('a garbage code is invalid_grant', async (t) => {
    await failsWith(t, await postForm(tokenUrl, codeFields(client, 'garbage', pkcePair().verifier)), 400, 'invalid_grant')
  })
})

t.test('refresh_token grant', async (t) => {
  t.test('a garbage refresh_token is invalid_grant', async (t) => {
    const client = await registerClient(stack)
    for (const refreshToken of ['garbage', 'a.b.c', 'AAAAAA.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
      await failsWith(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id }), 400, 'invalid_grant')
    }
  })

  t.test('a gateway code is not a refresh token', async (t) => {
    const client = await registerClient(stack)
    const { code } = await obtainCode(stack, client)
    await failsWith(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: code, client_id: client.client_id }), 400, 'invalid_grant')
  })

  t.test('a refresh token issued to client A is invalid_grant for client B', async (t) => {
    const a = await registerClient(stack)
    const b = await registerClient(stack)
    const tokens = await exchangeCode(stack, a, await obtainCode(stack, a))
    t.ok(tokens.refresh_token, 'A has a refresh token')
    await failsWith(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: b.client_id }), 400, 'invalid_grant')
    // B's attempt did not reach the upstream (which rotates and would have consumed it): A still refreshes.
    const refreshed = await succeeds(t, await postForm(tokenUrl, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: a.client_id }))
    t.not(refreshed.access_token, tokens.access_token, 'a new access token')
  })
})

t.test('the upstream is down during the code exchange: 503 temporarily_unavailable, quickly', async (t) => {
  // A stack of its own: this test closes the upstream.
  const own: Stack = await startStack()
  let upstreamClosed = false
  t.teardown(async () => {
    if (!upstreamClosed) return own.close()
    await own.gateway.close()
    await own.mcp.close()
  })
  const client = await registerClient(own)
  const { code, verifier } = await obtainCode(own, client)
  await own.upstream.close()
  upstreamClosed = true

  const started = Date.now()
  const response = await postForm(`${own.gatewayUrl}/token`, codeFields(client, code, verifier))
  const body = await failsWith(t, response, 503, 'temporarily_unavailable')
  t.ok(Date.now() - started < 5000, `answered within 5 s (took ${Date.now() - started} ms)`)
  t.type(body.error_description, 'string', 'with a description')
})

t.test('the upstream hangs during the code exchange: 504 temporarily_unavailable after the timeout', async (t) => {
  const own: Stack = await startStack()
  const client = await registerClient(own)
  const { code, verifier } = await obtainCode(own, client)

  // Something that accepts connections on the upstream's port and never answers.
  const port = Number(new URL(own.upstream.issuer).port)
  await own.upstream.close()
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => void sockets.add(socket))
  await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => silent.close(resolve))
    await own.gateway.close()
    await own.mcp.close()
  })

  const started = Date.now()
  const response = await postForm(`${own.gatewayUrl}/token`, codeFields(client, code, verifier))
  const elapsed = Date.now() - started
  await failsWith(t, response, 504, 'temporarily_unavailable')
  t.ok(sockets.size > 0, 'the gateway did reach the silent upstream')
  t.ok(elapsed >= 1500 && elapsed < 5000, `gave up after the 2 s upstream timeout (took ${elapsed} ms)`)
})
