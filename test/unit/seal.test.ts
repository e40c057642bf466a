import t from 'tap'
import { Sealer } from '../../gateway/state/seal.ts'

const oldKey = 'old-key-old-key-old-key-old-key-0'
const newKey = 'new-key-new-key-new-key-new-key-1'

t.test('seals and opens for the same purpose only', async (t) => {
  const sealer = new Sealer([newKey])
  const sealed = sealer.seal('code', { a: 1 })
  t.same(sealer.open('code', sealed), { a: 1 })
  t.equal(sealer.open('transaction', sealed), undefined, 'a code does not open as a transaction')
  t.notMatch(sealed, /"a"/, 'the payload is encrypted')
})

t.test('tampering, garbage and expiry give undefined', async (t) => {
  const sealer = new Sealer([newKey])
  const sealed = sealer.seal('code', { a: 1 })
  const [id, iv, data] = sealed.split('.')
  const flipped = data!.slice(0, 5) + (data![5] === 'A' ? 'B' : 'A') + data!.slice(6)
  t.equal(sealer.open('code', `${id}.${iv}.${flipped}`), undefined, 'flipped ciphertext')
  for (const junk of ['', 'a.b.c', '...', `${sealed}.x`, 123, null, { toString: () => sealed }, 'x'.repeat(9000)]) {
    t.equal(sealer.open('code', junk), undefined, `junk ${String(junk).slice(0, 20)}`)
  }
  t.equal(sealer.open('code', sealer.seal('code', { a: 1 }, -1)), undefined, 'expired')
  t.same(sealer.open('code', sealer.seal('code', { a: 1 }, 60)), { a: 1, exp: Math.floor(Date.now() / 1000) + 60 })
})

t.test('rotation: the first key seals, every key opens, a removed key opens nothing', async (t) => {
  const before = new Sealer([oldKey])
  const during = new Sealer([newKey, oldKey])
  const after = new Sealer([newKey])
  const oldSealed = before.seal('client', { c: 'old' })
  t.same(during.open('client', oldSealed), { c: 'old' })
  t.equal(after.open('client', oldSealed), undefined)
  t.same(after.open('client', during.seal('client', { c: 'new' })), { c: 'new' })
  const mac = before.sign('data')
  t.ok(during.verify('data', mac))
  t.notOk(after.verify('data', mac))
  t.notOk(during.verify('other', mac))
  t.notOk(during.verify('data', 42))
})
