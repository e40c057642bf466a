import t from 'tap'
import { MemoryStore, StoreUnavailable } from '../../gateway/store.ts'

t.test('single use, values, locks and expiry', async (t) => {
  const store = new MemoryStore()
  t.equal(await store.useOnce('code:1', 60), true)
  t.equal(await store.useOnce('code:1', 60), false, 'second use refused')
  t.equal(await store.setIfAbsent('lock', 'a', 60), true)
  t.equal(await store.setIfAbsent('lock', 'b', 60), false)
  t.equal(await store.get('lock'), 'a')
  await store.set('lock', 'c', 60)
  t.equal(await store.get('lock'), 'c')
  await store.delete('lock')
  t.equal(await store.get('lock'), undefined)
  await store.set('short', 'x', 0.05)
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal(await store.get('short'), undefined, 'expired')
  t.equal(await store.useOnce('short', 60), true, 'an expired mark can be set again')
})

t.test('bounded: expired entries make room, live ones are never dropped', async (t) => {
  const store = new MemoryStore(3)
  await store.set('a', '1', 0.01)
  await store.set('b', '1', 60)
  await store.set('c', '1', 60)
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.equal(await store.useOnce('d', 60), true, 'the expired entry was swept')
  await t.rejects(store.useOnce('e', 60), StoreUnavailable, 'full of live marks: refused, not forgotten')
  t.equal(await store.useOnce('b', 60), false, 'live marks kept')
})

t.test('expired entries are swept even when nobody reads them again', async (t) => {
  const store = new MemoryStore(100, 20)
  t.teardown(() => store.close())
  await store.set('answer', 'a remembered token answer', 0.01)
  await store.useOnce('transaction:1', 60)
  t.equal(store.size, 2)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(store.size, 1, 'the expired answer is gone without a read')
  t.equal(await store.useOnce('transaction:1', 60), false, 'the live mark stays')
})
