/**
 * No mass logout on upgrade: a refresh token the previous version issued
 * (test/fixtures/legacy-refresh-token.json, sealed by the gateway before
 * grants existed, with the script beside it) is accepted once, becomes a
 * grant, and is answered with a grant-bound refresh token. Its upstream
 * refresh token is seeded into the real oidc-provider upstream, as the
 * upstream would still hold it.
 */
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { postForm } from '../support/flow.ts'
import { grantOf } from '../support/grants.ts'
import { sample } from '../support/metrics.ts'
import { failsWith, pastRetryWindow, startStack, TEST_SECRET } from '../support/stack.ts'

interface Fixture {
  gatewaySecret: string
  clientId: string
  clientName: string
  redirectUri: string
  scope: string
  upstreamRefreshToken: string
  refreshToken: string
}

const fixture = JSON.parse(readFileSync(new URL('../fixtures/legacy-refresh-token.json', import.meta.url), 'utf8')) as Fixture
const RETRY_SECONDS = 1

/** A stack whose upstream still holds the fixture's refresh token, as it did before the upgrade; `refresh` presents the legacy token. */
async function legacyStack(t: Test, options: { faultProxy?: boolean } = {}) {
  t.equal(fixture.gatewaySecret, TEST_SECRET, 'the fixture was sealed with the test secret')
  const stack = await startStack({ ...options, config: (file) => ({ ...file, lifetimes: { refreshRetrySeconds: RETRY_SECONDS } }) })
  t.teardown(() => stack.close())
  const { provider } = stack.upstream
  const upstreamGrant = new provider.Grant({ accountId: 'np-user-1001', clientId: stack.upstream.clientId })
  upstreamGrant.addOIDCScope(fixture.scope)
  const grantId = await upstreamGrant.save()
  await new provider.RefreshToken({
    jti: fixture.upstreamRefreshToken,
    accountId: 'np-user-1001',
    clientId: stack.upstream.clientId,
    grantId,
    scope: fixture.scope,
    gty: 'authorization_code',
  }).save()
  const refresh = () => postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: fixture.refreshToken, client_id: fixture.clientId })
  return { stack, refresh }
}

t.test('a refresh token from before grants works once and becomes a grant', async (t) => {
  const { stack, refresh } = await legacyStack(t)
  const first = await refresh()
  const answeredAt = Date.now()
  t.equal(first.status, 200, 'accepted')
  const tokens = (await first.json()) as { access_token: string; refresh_token: string; scope: string }
  t.ok(tokens.access_token, 'a new access token')
  const bound = grantOf(tokens.refresh_token)
  const grant = await stack.gateway.gateway.grants.get(bound.g)
  t.match(grant, { clientId: fixture.clientId, clientName: fixture.clientName, redirectHost: 'chatgpt.com', scope: fixture.scope, refreshCount: 0 }, 'it became a grant')
  t.equal(bound.n, 0, 'the new refresh token names it, at its first generation')

  const repeat = await refresh()
  t.equal(repeat.status, 200, 'a retry within the window gets the same answer')
  t.equal(((await repeat.json()) as { access_token: string }).access_token, tokens.access_token)
  await pastRetryWindow(answeredAt, RETRY_SECONDS)
  const again = await failsWith(t, await refresh(), 400, 'invalid_grant')
  t.match(again.error_description, /already been exchanged/, 'later, the old token is spent')

  const next = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: fixture.clientId })
  t.equal(next.status, 200, 'the grant-bound token refreshes')
  t.equal((await stack.gateway.gateway.grants.get(bound.g))?.refreshCount, 1)

  const metrics = await (await fetch(`${stack.gatewayUrl}/metrics`)).text()
  t.equal(sample(metrics, 'oauth_gateway_grants_ended_total', { reason: 'upgrade' }), 1, 'the upgrade counted')
  t.equal(sample(metrics, 'oauth_gateway_grants_created_total', {}), 1)
})

t.test('an upgrade that meets an upstream failure is not spent: the retry upgrades', async (t) => {
  const { stack, refresh } = await legacyStack(t, { faultProxy: true })
  const proxy = stack.proxy!
  proxy.inject('html-500')
  await failsWith(t, await refresh(), 502, 'server_error')
  const failedAt = Date.now()
  proxy.inject('none')
  await pastRetryWindow(failedAt, RETRY_SECONDS)
  const retry = await refresh()
  t.equal(retry.status, 200, 'the retry, once the upstream is back, upgrades the token')
  const bound = grantOf(((await retry.json()) as { refresh_token: string }).refresh_token)
  t.match(await stack.gateway.gateway.grants.get(bound.g), { clientId: fixture.clientId }, 'into a grant')
})
