/**
 * Graceful shutdown of the gateway process as production runs it: on SIGTERM
 * it stops listening, the request in flight (waiting on a slow upstream)
 * still gets its answer, and the process exits 0; a request stuck past
 * server.shutdownTimeoutMs does not keep it alive, it exits 1 and says why.
 */
import t, { type Test } from 'tap'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts'
import { postForm, postJson } from '../support/flow.ts'
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts'
import { CHATGPT_REDIRECT, gatewayFile, TEST_SECRET } from '../support/stack.ts'
import { startUpstream } from '../support/upstream.ts'

async function gatewayBehindProxy(t: Test, server: Record<string, unknown>): Promise<{ gateway: GatewayProcess; proxy: FaultProxy }> {
  const proxy = await startFaultProxy()
  t.teardown(() => proxy.close())
  const upstream = await startUpstream({ redirectUris: ['http://127.0.0.1:8080/callback'], publicOrigin: proxy.url })
  t.teardown(() => upstream.close())
  proxy.setTarget(upstream.address)
  const file = gatewayFile('http://127.0.0.1:8080', upstream.issuer, 'http://127.0.0.1:3001/mcp')
  const gateway = await startGatewayProcess({
    config: { ...file, upstream: { ...file.upstream, timeoutMs: 20_000 }, server },
    env: { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: upstream.clientSecret },
  })
  t.teardown(() => gateway.stop())
  t.equal((await fetch(`${gateway.url}/readyz`)).status, 200, 'ready: the upstream metadata is loaded')
  return { gateway, proxy }
}

/** A refresh the upstream will refuse (the token is not its own), so it can be made slow without a sign-in. */
async function refreshRequest(gateway: GatewayProcess) {
  const registered = await postJson(`${gateway.url}/register`, { client_name: 'ChatGPT', redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] })
  const client = (await registered.json()) as { client_id: string }
  const refreshToken = new Sealer([TEST_SECRET]).seal('refresh', { rt: 'unknown-upstream-refresh-token-0123456789', c: clientHandle(client.client_id) })
  return () => postForm(`${gateway.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id })
}

async function until(check: () => boolean, within = 10_000) {
  const deadline = Date.now() + within
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('SIGTERM: no new connections, the request in flight gets its answer, exit 0', async (t) => {
  const { gateway, proxy } = await gatewayBehindProxy(t, {})
  const refresh = await refreshRequest(gateway)
  // The upstream's answer arrives one byte every 20 ms: well over a second in flight.
  proxy.inject('trickle', { trickleMs: 20 })
  const inFlight = refresh()
  await until(() => proxy.faulted === 1)

  gateway.child.kill('SIGTERM')
  await gateway.waitForLog((entry) => /^shutting down/.test(entry.msg))
  await t.rejects(fetch(`${gateway.url}/healthz`), 'a new connection is refused while the old request finishes')

  const answer = await inFlight
  t.equal(answer.status, 400, 'the request in flight was answered')
  t.match(await answer.json(), { error: 'invalid_grant' }, 'with the upstream\'s own answer, read to its last byte')
  t.equal(await gateway.exited, 0, 'then the process exits 0')
  t.ok(gateway.logs.some((entry) => entry.msg === 'shut down'))
})

t.test('a request stuck past server.shutdownTimeoutMs does not keep the process alive', async (t) => {
  const { gateway, proxy } = await gatewayBehindProxy(t, { shutdownTimeoutMs: 300 })
  const refresh = await refreshRequest(gateway)
  proxy.inject('no-answer')
  const stuck = refresh().then(
    (response) => response.status,
    () => 'connection closed',
  )
  await until(() => proxy.faulted === 1)
  gateway.child.kill('SIGTERM')
  t.equal(await gateway.exited, 1, 'exits 1 at the deadline, for the orchestrator to see')
  t.ok(gateway.logs.some((entry) => entry.msg === 'requests still in flight at the shutdown deadline; exiting'), 'and says why')
  t.equal(await stuck, 'connection closed', 'the stuck request ends with the process')
})
