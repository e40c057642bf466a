/**
 * Faults outside any request, in the gateway process as production starts it
 * (`node gateway/server.ts`): an unhandled promise rejection is logged and the
 * gateway keeps serving; an uncaught exception is logged and the process
 * exits with 70 for the orchestrator to restart it.
 */
import t from 'tap'
import { startGatewayProcess } from '../support/gateway-process.ts'
import { freePort } from '../support/ports.ts'
import { gatewayFile, TEST_SECRET } from '../support/stack.ts'

async function gatewayWith(fault: 'rejection' | 'exception') {
  // Nothing listens at the upstream's address: these faults do not involve it.
  const upstream = `http://127.0.0.1:${await freePort()}`
  return startGatewayProcess({
    config: gatewayFile('http://127.0.0.1:8080', upstream, 'http://127.0.0.1:3001/mcp'),
    env: { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: 'upstream-secret', PROCESS_FAULT: fault },
    nodeArgs: ['--import', './test/support/process-fault.ts'],
  })
}

t.test('an unhandled rejection is logged and the gateway keeps serving', async (t) => {
  const gateway = await gatewayWith('rejection')
  t.teardown(() => gateway.stop())
  gateway.child.kill('SIGUSR2')
  const logged = await gateway.waitForLog((entry) => entry.msg === 'unhandled promise rejection; still serving')
  t.equal(logged.level, 50, 'logged as an error')
  t.match(logged.err?.message, /injected rejection/, 'with the reason')
  const health = await fetch(`${gateway.url}/healthz`)
  t.equal(health.status, 200, 'still serving')
  t.equal(await gateway.stop(), 0, 'and stops cleanly on SIGTERM')
})

t.test('an uncaught exception is logged and the process exits for a restart', async (t) => {
  const gateway = await gatewayWith('exception')
  t.teardown(() => gateway.stop())
  t.equal((await fetch(`${gateway.url}/healthz`)).status, 200, 'serving before the fault')
  gateway.child.kill('SIGUSR2')
  t.equal(await gateway.exited, 70, 'exits with EX_SOFTWARE')
  const logged = gateway.logs.find((entry) => entry.level === 60)
  t.match(logged?.msg, /uncaught exception/, 'logged as fatal')
  t.match(logged?.err?.message, /injected exception/, 'with the error')
})
