/**
 * 100,000 grants, inserted in bulk through storage (test/unit/grant-scale-*.test.ts,
 * one file per storage so each stays within the test timeout): every listing
 * comes in pages of the size asked for, the pages together hold every grant
 * once, and walking them all keeps memory bounded (the live heap grows by
 * far less than the grants would weigh loaded at once).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Test } from 'tap'
import type { Grant } from '../../gateway/grants/grant.ts'
import type { GrantStorage } from '../../gateway/state/grant-storage.ts'
import { registryOn } from './grants.ts'

const COUNT = 100_000
const BATCH = 5_000
const PAGE = 1_000

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function liveHeap(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const now = Math.floor(Date.now() / 1000)

function grant(n: number): Grant {
  return {
    grantId: `g_${String(n).padStart(9, '0')}`,
    clientId: `client-${n % 50}`,
    clientName: `Client ${n % 50}`,
    unverified: true,
    redirectHost: 'chatgpt.com',
    preset: 'chatgpt',
    user: { id: `user-${n % 10_000}`, email: `user-${n % 10_000}@example.test` },
    scope: 'openid offline_access',
    createdAt: now,
    lastUsedAt: now,
    refreshCount: 0,
    expiresAt: now + 86_400,
    activeUntil: now + 86_400,
    upstreamRefreshToken: `sealed-${'x'.repeat(200)}-${n}`,
    generation: 0,
    accessTokens: [{ hash: `hash-${n}`, expiresAt: now + 3600 }],
  }
}

/** Inserts 100,000 grants into `storage` and walks them page by page through a registry. */
export async function walk(t: Test, storage: GrantStorage) {
  const started = Date.now()
  for (let from = 0; from < COUNT; from += BATCH) await storage.createGrants(Array.from({ length: BATCH }, (_, i) => grant(from + i)))
  t.comment(`inserted ${COUNT} grants in ${Date.now() - started} ms`)
  t.equal(await storage.countGrants(), COUNT)

  const { registry } = registryOn(storage)
  t.teardown(() => registry.close())
  const before = liveHeap()
  let peak = before
  let seen = 0
  let pages = 0
  let last = ''
  let ordered = true
  let cursor: string | undefined
  do {
    const page = await registry.list({}, { limit: PAGE, cursor })
    if (page.items.length > PAGE) t.fail('a page larger than asked')
    for (const item of page.items) {
      if (item.grantId <= last) ordered = false
      last = item.grantId
    }
    seen += page.items.length
    pages++
    cursor = page.nextCursor
    if (pages % 20 === 0) peak = Math.max(peak, liveHeap())
  } while (cursor)
  t.equal(seen, COUNT, 'every grant, once')
  t.equal(pages, COUNT / PAGE, `${pages} pages of ${PAGE}`)
  t.ok(ordered, 'in order, none twice')
  const grown = peak - before
  t.comment(`live heap grew by ${(grown / 1e6).toFixed(1)} MB while walking`)
  t.ok(grown < 20e6, `memory stays bounded while walking 100,000 grants (${(grown / 1e6).toFixed(1)} MB; loaded at once they weigh over 50 MB)`)

  const user = await registry.listForUser('user-42', { limit: 100 })
  t.equal(user.items.length, COUNT / 10_000, "one user's grants, from its index")
  t.ok(user.items.every((item) => item.user?.id === 'user-42'))
  const byClient = await registry.list({ clientId: 'client-7' }, { limit: 500 })
  t.equal(byClient.items.length, 500, 'a page of one client')
  t.ok(byClient.nextCursor, 'with more to come')
}

