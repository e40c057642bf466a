/**
 * The in-memory store's bound comes from memoryStore.maxEntries: with a bound
 * of 10, a few complete sign-ins against the real upstream fill it, and the
 * next request that needs an entry is refused with the OAuth-shaped 503 (the
 * log names the cause, /metrics shows the fill) rather than the store
 * forgetting a single-use mark.
 */
import t from 'tap'
import { capturedLog } from '../support/log-capture.ts'
import { obtainCode, postCodeExchange, registerClient } from '../support/flow.ts'
import { sample } from '../support/metrics.ts'
import { startStack } from '../support/stack.ts'

const log = capturedLog()
const stack = await startStack({ config: (file) => ({ ...file, memoryStore: { maxEntries: 10 } }), logger: log.logger })
t.teardown(() => stack.close())

t.test('a full in-memory store answers 503 temporarily_unavailable and logs why', async (t) => {
  const client = await registerClient(stack)
  let refused: { flow: number; status: number; body: string } | undefined
  for (let flow = 1; flow <= 10 && !refused; flow++) {
    let obtained
    try {
      obtained = await obtainCode(stack, client)
    } catch (err) {
      refused = { flow, status: 0, body: String(err) }
      break
    }
    const response = await postCodeExchange(stack, client, obtained)
    if (response.status !== 200) refused = { flow, status: response.status, body: await response.text() }
  }
  t.ok(refused, 'ten sign-ins do not fit in ten entries')
  if (!refused) return
  // Each sign-in here leaves four entries (the consent answer's mark, its state's mark, its code's spent mark and the
  // code's answer), so two fill eight of the ten and the third finds the store full at its code exchange.
  t.equal(refused.flow, 3, 'the store fills after two sign-ins')
  t.equal(refused.status, 503, `the code exchange is refused: ${refused.body}`)
  t.match(JSON.parse(refused.body), { error: 'temporarily_unavailable', error_description: /state store is unavailable/ })
  t.ok(log.lines.some((line) => line.includes('the in-memory store is full')), 'the log names the cause')
  const metrics = await (await fetch(`${stack.gatewayUrl}/metrics`)).text()
  t.equal(sample(metrics, 'oauth_gateway_memory_store_entries', {}), 10, '/metrics shows the store full')
  t.equal(sample(metrics, 'oauth_gateway_memory_store_max_entries', {}), 10, 'and its bound')
})
