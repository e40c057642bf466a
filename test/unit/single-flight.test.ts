import t from 'tap'
import { OAuthError } from '../../gateway/errors.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { singleFlight, type Flight } from '../../gateway/state/single-flight.ts'
import { MemoryStore } from '../../gateway/state/store.ts'

const sealer = new Sealer(['single-flight-test-secret-0123456789abcdef'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// Waiters wait long enough for any leader on a loaded machine; the test of a dead holder sets its own.
function flight(overrides: Partial<Flight> = {}): Flight {
  return { lockKey: 'lock', lockSeconds: 30, answerKey: 'answer', answerSeconds: 30, binding: 'client-a', waitMs: 30_000, ...overrides }
}

t.test('concurrent identical requests: the work runs once, everyone gets its answer', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  let runs = 0
  const work = async () => {
    runs++
    await sleep(100)
    return { access_token: 'at-1' }
  }
  const outcomes = await Promise.all([1, 2, 3, 4, 5].map(() => singleFlight(shared, flight(), work)))
  t.equal(runs, 1, 'one run')
  t.same(outcomes.map((outcome) => outcome.kind), ['answered', 'answered', 'answered', 'answered', 'answered'])
  t.same(outcomes.filter((outcome) => outcome.kind === 'answered' && !outcome.repeated).length, 1, 'one led, the others repeated its answer')
  for (const outcome of outcomes) if (outcome.kind === 'answered') t.same(outcome.value, { access_token: 'at-1' })
})

t.test('the remembered answer is sealed in the store', async (t) => {
  const store = new MemoryStore()
  await singleFlight({ store, sealer }, flight(), async () => ({ access_token: 'plain-text-token' }))
  const stored = await store.get('answer')
  t.ok(stored, 'remembered')
  t.notMatch(stored!, /plain-text-token/, 'not in plain text')
})

t.test('another binding does not get the answer', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  await singleFlight(shared, flight(), async () => 'first')
  let ran = false
  const outcome = await singleFlight(shared, flight({ binding: 'client-b' }), async () => {
    ran = true
    return 'second'
  })
  t.same(outcome, { kind: 'mismatch' })
  t.notOk(ran, 'and the work does not run again')
})

t.test('single use (doneSeconds): once the answer is forgotten, a repeat is spent', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  await singleFlight(shared, flight({ doneSeconds: 30, answerSeconds: 1 }), async () => 'once')
  t.same(await singleFlight(shared, flight({ doneSeconds: 30, answerSeconds: 1 }), async () => 'twice'), { kind: 'answered', value: 'once', repeated: true }, 'within the window')
  await sleep(1100)
  t.same(await singleFlight(shared, flight({ doneSeconds: 30, answerSeconds: 1 }), async () => 'twice'), { kind: 'spent' }, 'after it')
})

t.test('without doneSeconds the lock is released: after the window the work runs again', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  await singleFlight(shared, flight({ answerSeconds: 1 }), async () => 'first')
  await sleep(1100)
  t.same(await singleFlight(shared, flight({ answerSeconds: 1 }), async () => 'second'), { kind: 'answered', value: 'second', repeated: false })
})

t.test('a refusal is remembered for the waiters too', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  const work = async () => {
    await sleep(50)
    throw new OAuthError(400, 'invalid_grant', 'the upstream said no')
  }
  const results = await Promise.allSettled([1, 2, 3].map(() => singleFlight(shared, flight({ doneSeconds: 30 }), work)))
  for (const result of results) {
    t.equal(result.status, 'rejected')
    if (result.status === 'rejected') t.match(result.reason, { status: 400, error: 'invalid_grant', message: 'the upstream said no' })
  }
})

t.test('a transient failure releases the lock and is not remembered: a retry runs the work again', async (t) => {
  const shared = { store: new MemoryStore(), sealer }
  const failed = await singleFlight(shared, flight({ doneSeconds: 30 }), async () => {
    throw new OAuthError(503, 'temporarily_unavailable', 'down')
  }).catch((err: unknown) => err)
  t.match(failed, { error: 'temporarily_unavailable' })
  t.same(await singleFlight(shared, flight({ doneSeconds: 30 }), async () => 'up again'), { kind: 'answered', value: 'up again', repeated: false })
})

t.test('a lock whose holder died: busy after the wait, not a hang', async (t) => {
  const store = new MemoryStore()
  await store.setIfAbsent('lock', 'running', 30)
  t.same(await singleFlight({ store, sealer }, flight({ waitMs: 200 }), async () => 'never'), { kind: 'busy' })
})

t.test('a waiter picks up the answer when the lock is released mid-wait', async (t) => {
  const store = new MemoryStore()
  await store.setIfAbsent('lock', 'running', 30)
  setTimeout(() => void store.delete('lock'), 100)
  t.same(await singleFlight({ store, sealer }, flight(), async () => 'after release'), { kind: 'answered', value: 'after release', repeated: false }, 'it leads once the lock is free')
})
