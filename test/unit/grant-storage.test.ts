/**
 * Grant storage, one suite for each kind: SQLite in memory, a SQLite file,
 * and real Redis (the shared server, a random key prefix). Creation and
 * compare-and-set updates, ending with the user check, listings by each
 * filter page by page, revocations written once, blocks, the client list
 * keeping first_seen, and the purge of expired grants.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { Grant, Revocation } from '../../gateway/grants/grant.ts'
import type { GrantStorage } from '../../gateway/state/grant-storage.ts'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { grantFixture, redisGrantStorage } from '../support/grants.ts'

const now = Math.floor(Date.now() / 1000)


const revocationsOf = (grant: Grant): Revocation[] => [
  { key: `grant:${grant.grantId}`, reason: 'revoked_by_admin', endedAt: now, expiresAt: now + 60 },
  ...grant.accessTokens.map((mark): Revocation => ({ key: `access:${mark.hash}`, reason: 'revoked_by_admin', endedAt: now, expiresAt: mark.expiresAt })),
]

const kinds: Array<[string, (t: Test) => Promise<GrantStorage>]> = [
  ['sqlite in memory', async () => new SqliteGrantStorage(':memory:')],
  ['sqlite file', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'grant-storage-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return new SqliteGrantStorage(join(dir, 'nested', 'state.sqlite'))
  }],
  ['redis', (t) => redisGrantStorage(t)],
]

for (const [name, open] of kinds) {
  t.test(name, async (t) => {
    const storage = await open(t)
    t.teardown(() => storage.close())

    t.test('create, get, compare-and-set update', async (t) => {
      await storage.createGrant(grantFixture(1))
      const read = await storage.getGrant('g_00000001')
      t.same(read, grantFixture(1), 'read back as written')
      t.equal(await storage.getGrant('g_nope'), undefined, 'unknown id')
      t.ok(await storage.updateGrant({ ...grantFixture(1), generation: 1, refreshCount: 1 }, 0), 'update at the expected generation')
      t.notOk(await storage.updateGrant({ ...grantFixture(1), generation: 2, refreshCount: 9 }, 0), 'a stale generation writes nothing')
      t.equal((await storage.getGrant('g_00000001'))?.refreshCount, 1)
    })

    t.test('ending: once, only for its user, revocations written', async (t) => {
      await storage.createGrant(grantFixture(2))
      t.equal(await storage.endGrant('g_00000002', revocationsOf, 'bob'), undefined, "another user's id ends nothing")
      t.ok(await storage.getGrant('g_00000002'), 'still there')
      const ended = await storage.endGrant('g_00000002', revocationsOf, 'alice')
      t.equal(ended?.grantId, 'g_00000002', 'its user ends it')
      t.equal(await storage.getGrant('g_00000002'), undefined, 'gone')
      t.equal(await storage.endGrant('g_00000002', revocationsOf), undefined, 'a second end ends nothing')
      t.equal((await storage.getRevocation('grant:g_00000002'))?.reason, 'revoked_by_admin', 'its revocation')
      t.ok(await storage.getRevocation('access:h2'), 'its access token is marked')
      t.equal(await storage.getRevocation('access:h1'), undefined, 'no other mark')
    })

    t.test('listings page by page, per filter', async (t) => {
      await storage.createGrants(Array.from({ length: 25 }, (_, i) => grantFixture(100 + i)))
      const seen: string[] = []
      let after: string | undefined
      let pages = 0
      do {
        const page = await storage.listGrants({}, 10, after)
        seen.push(...page.items.map((grant) => grant.grantId))
        after = page.last
        pages++
      } while (after !== undefined)
      t.equal(pages, 3, 'three pages of ten')
      t.equal(new Set(seen).size, seen.length, 'no grant twice')
      t.same(seen, [...seen].sort(), 'in id order')
      t.ok(seen.includes('g_00000001') && seen.includes('g_00000124'))
      const alice = await storage.listGrants({ userId: 'alice' }, 100)
      t.ok(alice.items.length > 0 && alice.items.every((grant) => grant.user?.id === 'alice'), 'by user')
      const client1 = await storage.listGrants({ clientId: 'client-1' }, 100)
      t.ok(client1.items.length > 0 && client1.items.every((grant) => grant.clientId === 'client-1'), 'by client')
      const both = await storage.listGrants({ userId: 'alice', clientId: 'client-1' }, 3)
      t.ok(both.items.every((grant) => grant.clientId === 'client-1' && grant.user?.id === 'alice'), 'by both')
      t.equal(await storage.countGrants(), 26)
    })

    t.test('a revocation once', async (t) => {
      const mark: Revocation = { key: 'legacy:abc', reason: 'upgrade', endedAt: now, expiresAt: now + 60 }
      t.ok(await storage.addRevocationOnce(mark), 'first')
      t.notOk(await storage.addRevocationOnce(mark), 'second')
      await storage.removeRevocation(mark.key)
      t.equal(await storage.getRevocation(mark.key), undefined, 'taken back')
      t.ok(await storage.addRevocationOnce(mark), 'first again once taken back')
      await storage.removeRevocation('legacy:unknown')
      await storage.addRevocations([{ ...mark, key: 'access:x' }])
      t.ok(await storage.getRevocation('access:x'))
    })

    t.test('blocks', async (t) => {
      await storage.addBlock({ blockId: 'b_2', kind: 'redirect_host', value: 'evil.example', reason: 'phishing', createdAt: now })
      await storage.addBlock({ blockId: 'b_1', kind: 'client_id', value: 'client-1', reason: 'abuse', createdAt: now })
      t.same((await storage.listBlocks()).map((block) => block.blockId), ['b_1', 'b_2'])
      t.ok(await storage.removeBlock('b_1'))
      t.notOk(await storage.removeBlock('b_1'), 'gone')
      t.same((await storage.listBlocks()).map((block) => block.blockId), ['b_2'])
    })

    t.test('clients keep their first_seen and count their grants', async (t) => {
      await storage.recordClient({ clientId: 'client-1', clientName: 'One', redirectUris: ['https://a.example/cb'], firstSeenAt: now - 100, lastUsedAt: now - 100, applicationType: 'native' })
      await storage.recordClient({ clientId: 'client-1', clientName: 'One renamed', redirectUris: ['https://a.example/cb'], firstSeenAt: now, lastUsedAt: now, applicationType: 'web' })
      await storage.recordClient({ clientId: 'client-x', redirectUris: [], firstSeenAt: now, lastUsedAt: now })
      const first = await storage.listClients(1)
      t.equal(first.items.length, 1)
      t.ok(first.last, 'more follow')
      const all = [...first.items, ...(await storage.listClients(10, first.last)).items]
      const one = all.find((client) => client.clientId === 'client-1')!
      t.equal(one.firstSeenAt, now - 100, 'first_seen kept')
      t.equal(one.lastUsedAt, now, 'last_used moved')
      t.equal(one.clientName, 'One renamed')
      t.equal(one.applicationType, 'native', 'the first known application type kept')
      t.ok(one.grants > 0, 'its grants counted')
      t.equal(all.find((client) => client.clientId === 'client-x')?.grants, 0)
    })

    t.test('purge removes what expired, and only that', async (t) => {
      await storage.createGrant(grantFixture(900, { activeUntil: now - 1 }))
      await storage.createGrant(grantFixture(901, { activeUntil: now + 10_000 }))
      const purged = await storage.purgeExpired(now)
      t.same(purged.map((grant) => grant.grantId), ['g_00000900'])
      t.equal(await storage.getGrant('g_00000900'), undefined)
      t.ok(await storage.getGrant('g_00000901'))
      t.notOk((await storage.listGrants({}, 1000)).items.some((grant) => grant.grantId === 'g_00000900'), 'out of the listing')
    })
  })
}
