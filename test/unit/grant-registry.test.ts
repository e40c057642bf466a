/**
 * The grant registry's rules on real storage (SQLite in memory): lifetimes
 * (idle, age, the upstream token's own), generations, who may end what,
 * opaque cursors that refuse anything they did not make, cached blocks, the
 * client list.
 */
import t, { type Test } from 'tap'
import type { RegisteredClient } from '../../gateway/clients/client.ts'
import type { UpstreamRevocation } from '../../gateway/grants/grant.ts'
import { BLOCKS_REFRESH_MS, GrantRegistry, type NewGrant } from '../../gateway/grants/registry.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { StoreUnavailable } from '../../gateway/state/store.ts'

const DAY = 86_400

/** `revocation`: what the upstream answers a revocation with; an Error is thrown instead. */
function setup(t: Test, settings = { maxIdleDays: 30, maxAgeDays: 90 }, revocation: UpstreamRevocation | Error = 'revoked') {
  const storage = new SqliteGrantStorage(':memory:')
  const revoked: Array<{ token: string; clientId: string }> = []
  const ended: string[] = []
  const warnings: Array<{ details: object; message: string }> = []
  const registry = new GrantRegistry({
    storage,
    sealer: new Sealer(['registry-test-secret-0123456789abcdef']),
    settings,
    observer: { grantCreated() {}, grantEnded: (reason) => void ended.push(reason) },
    log: { warn: (details, message) => void warnings.push({ details, message }) },
    async revokeUpstream(token, clientId) {
      revoked.push({ token, clientId })
      if (revocation instanceof Error) throw revocation
      return revocation
    },
  })
  t.teardown(async () => {
    registry.close()
    await storage.close()
  })
  return { registry, storage, revoked, ended, warnings }
}

function client(id: string, name = 'ChatGPT', extra: Partial<RegisteredClient> = {}): RegisteredClient {
  return { client_id: id, redirect_uris: ['https://chatgpt.com/connector/oauth/x'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], client_name: name, client_id_issued_at: 0, application_type: 'web', ...extra }
}

function newGrant(overrides: Partial<NewGrant> = {}): NewGrant {
  return { client: client('c1'), redirectUri: 'https://chatgpt.com/connector/oauth/x', user: { id: 'u1' }, scope: 'openid', upstreamRefreshToken: 'upstream-rt-1', accessToken: { token: 'at-1', expiresIn: 60 }, ...overrides }
}

/** An OAuthError with this code, as the error handler would answer it. */
function isOAuthError(code: string) {
  return { name: 'OAuthError', error: code }
}

t.test('a grant: its fields, its lifetimes, its generations', async (t) => {
  const { registry, storage, revoked, ended } = setup(t)
  const grant = await registry.create(newGrant({ upstreamRefreshExpiresIn: 10 * DAY }))
  t.match(grant, { clientId: 'c1', clientName: 'ChatGPT', unverified: true, redirectHost: 'chatgpt.com', preset: 'chatgpt', refreshCount: 0, generation: 0 })
  t.equal(grant.expiresAt - grant.createdAt, 10 * DAY, "the upstream token's shorter lifetime ends it")
  t.equal(grant.activeUntil, grant.expiresAt, 'idle time never reaches past it')
  t.notMatch(JSON.stringify(await storage.getGrant(grant.grantId)), /upstream-rt-1/, 'the upstream refresh token is sealed at rest')
  t.notMatch(JSON.stringify(await storage.getGrant(grant.grantId)), /at-1/, 'the access token is kept only as a hash')

  const opened = await registry.openForRefresh(grant.grantId, 0)
  t.equal(opened.upstreamRefreshToken, 'upstream-rt-1')
  const same = await registry.refreshed(opened.grant, { accessToken: { token: 'at-2' } })
  t.equal(same.generation, 0, 'no rotation, same generation')
  const rotated = await registry.refreshed(same, { upstreamRefreshToken: 'upstream-rt-2' })
  t.equal(rotated.generation, 1, 'rotation: the next generation')
  t.equal(rotated.refreshCount, 2)
  await t.rejects(registry.openForRefresh(grant.grantId, 0), isOAuthError('invalid_grant'), 'an older generation is refused')
  await t.rejects(registry.refreshed(same, {}), isOAuthError('invalid_grant'), 'a refresh that lost the race writes nothing')
  t.equal((await registry.openForRefresh(grant.grantId, 1)).upstreamRefreshToken, 'upstream-rt-2')

  // Idle past its time: refused, ended as expired, its upstream token revoked.
  await storage.updateGrant({ ...rotated, activeUntil: Math.floor(Date.now() / 1000) - 1 }, 1)
  await t.rejects(registry.openForRefresh(grant.grantId, 1), { error: 'invalid_grant', message: /expired/ })
  t.same(ended, ['expired'])
  t.same(revoked, [{ token: 'upstream-rt-2', clientId: 'c1' }])
  await t.rejects(registry.openForRefresh(grant.grantId, 1), { error: 'invalid_grant', message: /grant has ended \(it expired\)/ }, 'and says so later')
})

t.test("a refresh and the grant's end: a rotated token's new lifetime extends it, up to grants.maxAgeDays", async (t) => {
  const { registry } = setup(t, { maxIdleDays: 30, maxAgeDays: 90 })
  const grant = await registry.create(newGrant({ upstreamRefreshExpiresIn: 10 * DAY }))
  const kept = await registry.refreshed(grant, { accessToken: { token: 'at-2' } })
  t.equal(kept.expiresAt, grant.expiresAt, 'no lifetime told, no rotation: the end stays')
  const rotated = await registry.refreshed(kept, { upstreamRefreshToken: 'upstream-rt-2', upstreamRefreshExpiresIn: 20 * DAY })
  t.equal(rotated.expiresAt - rotated.lastUsedAt, 20 * DAY, 'a rotated token with its own lifetime: the grant lives as long')
  t.equal(rotated.activeUntil - rotated.lastUsedAt, 20 * DAY, 'and may be idle until then')
  const capped = await registry.refreshed(rotated, { upstreamRefreshToken: 'upstream-rt-3', upstreamRefreshExpiresIn: 200 * DAY })
  t.equal(capped.expiresAt, grant.createdAt + 90 * DAY, 'never beyond grants.maxAgeDays from its creation')
  const same = await registry.refreshed(capped, { upstreamRefreshExpiresIn: 5 * DAY })
  t.equal(same.expiresAt - same.lastUsedAt, 5 * DAY, 'what is left of the same token can bring the end closer')
  const notLonger = await registry.refreshed(same, { upstreamRefreshExpiresIn: 50 * DAY })
  t.equal(notLonger.expiresAt, same.expiresAt, 'but not push it further: it is not a new token')
})

t.test('a refresh that loses to the grant ending: the token the upstream rotated meanwhile is revoked', async (t) => {
  const { registry, revoked } = setup(t)
  const grant = await registry.create(newGrant())
  const opened = await registry.openForRefresh(grant.grantId, 0)
  // The user disconnects the app while the upstream refresh runs.
  await registry.revokeGrant(grant.grantId, 'user', { user: 'u1' })
  t.same(revoked, [{ token: 'upstream-rt-1', clientId: 'c1' }], 'ending revoked the token the grant held')
  await t.rejects(registry.refreshed(opened.grant, { upstreamRefreshToken: 'upstream-rt-2' }), { error: 'invalid_grant', message: /ended while the refresh ran/ })
  t.same(revoked.at(-1), { token: 'upstream-rt-2', clientId: 'c1' }, 'the rotated one is revoked too')

  const kept = await registry.create(newGrant({ upstreamRefreshToken: 'upstream-rt-3' }))
  const again = await registry.openForRefresh(kept.grantId, 0)
  await registry.revokeGrant(kept.grantId, 'admin')
  const before = revoked.length
  await t.rejects(registry.refreshed(again.grant, {}), isOAuthError('invalid_grant'))
  t.equal(revoked.length, before, 'no rotation: nothing more to revoke')
})

t.test('the rotated token after a lost refresh: an upstream that fails the revocation is logged, without the token', async (t) => {
  const { registry, warnings } = setup(t, undefined, new Error('upstream: connection refused'))
  const grant = await registry.create(newGrant())
  const opened = await registry.openForRefresh(grant.grantId, 0)
  await registry.revokeGrant(grant.grantId, 'admin')
  await t.rejects(registry.refreshed(opened.grant, { upstreamRefreshToken: 'upstream-rt-2' }), isOAuthError('invalid_grant'), 'the client still hears why')
  t.match(warnings.at(-1), { details: { grant_id: grant.grantId, err: 'upstream: connection refused' }, message: /rotated/ })
  t.notMatch(JSON.stringify(warnings), /upstream-rt-2/, 'the token is not logged')
})

t.test('ending: only the owner, once; the purge', async (t) => {
  const { registry, storage, revoked, ended } = setup(t, { maxIdleDays: 30, maxAgeDays: 90 }, 'unsupported')
  const grant = await registry.create(newGrant())
  t.same(await registry.revokeGrant(grant.grantId, 'user', { user: 'u2' }), { ended: false, upstreamRevocation: 'unsupported' })
  t.ok(await registry.get(grant.grantId), 'still there')
  t.same(await registry.revokeGrant(grant.grantId, 'user', { user: 'u1' }), { ended: true, upstreamRevocation: 'unsupported' })
  t.same(ended, ['revoked_by_user'])
  t.ok(await registry.isAccessTokenRevoked('at-1'), 'its access token is refused from now on')
  t.notOk(await registry.isAccessTokenRevoked('at-unknown'))
  t.same((await registry.revokeGrant(grant.grantId, 'admin')).ended, false, 'once')

  const old = await registry.create(newGrant({ upstreamRefreshToken: 'old-rt' }))
  await storage.updateGrant({ ...old, activeUntil: Math.floor(Date.now() / 1000) - 1 }, 0)
  t.equal(await registry.purgeExpired(), 1)
  t.equal(await registry.get(old.grantId), undefined)
  t.ok(revoked.some((call) => call.token === 'old-rt'), 'the purge revokes upstream too')
})

t.test('cursors and limits', async (t) => {
  const { registry } = setup(t)
  for (let i = 0; i < 7; i++) await registry.create(newGrant({ client: client(`c${i % 2}`), user: { id: i < 4 ? 'u1' : 'u2' } }))
  const seen: string[] = []
  let cursor: string | undefined
  do {
    const page = await registry.list({}, { limit: 3, cursor })
    t.ok(page.items.length <= 3)
    seen.push(...page.items.map((grant) => grant.grantId))
    cursor = page.nextCursor
  } while (cursor)
  t.equal(seen.length, 7, 'every grant once')
  t.equal((await registry.listForUser('u2')).items.length, 3)
  t.equal((await registry.list({ user: 'u1', clientId: 'c0' })).items.length, 2)
  for (const bad of ['', 'not a cursor!', 'eyJ4IjoxfQ', Buffer.from('{"a":5}').toString('base64url'), 'x'.repeat(2000), Buffer.from('[').toString('base64url')]) {
    await t.rejects(registry.list({}, { cursor: bad }), isOAuthError('invalid_request'), `cursor ${bad.slice(0, 20)} is refused`)
  }
  await t.rejects(registry.listClients({ cursor: 'garbage%' }), isOAuthError('invalid_request'))
  for (const limit of [0, -1, 1.5, 1001]) await t.rejects(registry.list({}, { limit }), isOAuthError('invalid_request'), `limit ${limit}`)
})

t.test('blocks: kept, matched, cached', async (t) => {
  const { registry } = setup(t)
  const victim = await registry.create(newGrant({ client: client('c9', 'Evil Helper Bot') }))
  await registry.create(newGrant({ client: client('c8', 'Fine') }))
  const { block, ended } = await registry.addBlock({ kind: 'client_name_pattern', value: 'evil*bot', reason: 'phishing' })
  t.equal(ended, 1, 'it ended the grant it matches')
  t.equal(await registry.get(victim.grantId), undefined)
  t.match(await registry.isBlocked({ clientName: 'EVIL little BOT' }), { blockId: block.blockId, reason: 'phishing' }, 'case-insensitive, whole name')
  t.equal(await registry.isBlocked({ clientName: 'not an evil bot really' }), undefined)
  t.equal(await registry.isBlocked({ clientName: 'Fine' }), undefined)
  t.equal(registry.blockCount, 1)
  t.ok(await registry.removeBlock(block.blockId))
  t.notOk(await registry.removeBlock(block.blockId), 'an unknown block id')
  t.equal(await registry.isBlocked({ clientName: 'Evil Bot' }), undefined)
  t.same(await registry.listBlocks(), [])
})

t.test('blocks while storage does not answer: the last ones loaded still apply; none loaded yet fails', async (t) => {
  /** SQLite whose listBlocks fails while `down` is set, as Redis away would. */
  class FlakyStorage extends SqliteGrantStorage {
    down = false
    override async listBlocks() {
      if (this.down) throw new StoreUnavailable('Redis: connection refused')
      return super.listBlocks()
    }
  }
  const storage = new FlakyStorage(':memory:')
  const warnings: string[] = []
  const options = { sealer: new Sealer(['registry-test-secret-0123456789abcdef']), settings: { maxIdleDays: 30, maxAgeDays: 90 }, log: { warn: (_details: object, message: string) => void warnings.push(message) }, revokeUpstream: async () => 'revoked' as const }
  const registry = new GrantRegistry({ storage, ...options })
  t.teardown(async () => {
    registry.close()
    await storage.close()
  })
  const { block } = await registry.addBlock({ kind: 'client_name_pattern', value: 'evil*', reason: 'phishing' })
  await registry.start()
  storage.down = true
  // Older than twice the refresh period: isBlocked reloads, and the reload fails.
  await new Promise((resolve) => setTimeout(resolve, 2 * BLOCKS_REFRESH_MS + 100))
  t.match(await registry.isBlocked({ clientName: 'Evil Corp' }), { blockId: block.blockId }, 'the block known before the outage still applies')
  t.equal(await registry.isBlocked({ clientName: 'Fine' }), undefined, 'and others are not blocked')
  t.equal(warnings.filter((line) => /could not be reloaded/.test(line)).length, 1, 'told once')

  const fresh = new GrantRegistry({ storage, ...options })
  t.teardown(() => fresh.close())
  await fresh.start()
  await t.rejects(fresh.isBlocked({ clientName: 'Fine' }), { name: 'StoreUnavailable' }, 'never loaded: no answer to give')
})

t.test('the client list', async (t) => {
  const { registry } = setup(t)
  await registry.recordClient(client('https://app.example/client.json', 'Doc client', { metadata_document: true }))
  await registry.create(newGrant({ client: client('c1') }))
  await registry.create(newGrant({ client: client('c1') }))
  const clients = (await registry.listClients()).items
  t.equal(clients.length, 2)
  t.equal(clients.find((record) => record.clientId === 'c1')?.grants, 2, 'with its grant count')
  t.equal(clients.find((record) => record.clientId !== 'c1')?.grants, 0)
})

t.test('front mode checks fail open while storage does not answer, told once', async (t) => {
  const storage = new SqliteGrantStorage(':memory:')
  const warnings: string[] = []
  const registry = new GrantRegistry({
    storage,
    sealer: new Sealer(['registry-test-secret-0123456789abcdef']),
    settings: { maxIdleDays: 30, maxAgeDays: 90 },
    log: { warn: (_details, message) => void warnings.push(message) },
    revokeUpstream: async () => 'revoked',
  })
  t.teardown(() => registry.close())
  const grant = await registry.create(newGrant())
  await registry.revokeGrant(grant.grantId, 'admin')
  t.ok(await registry.isAccessTokenRevoked('at-1'))
  await storage.close()
  t.equal(await registry.isAccessTokenRevoked('at-1'), false, 'storage gone: the MCP server decides')
  t.equal(await registry.isAccessTokenRevoked('at-1'), false)
  t.equal(warnings.filter((line) => /cannot be checked/.test(line)).length, 1, 'one warning, not one per request')
  await t.rejects(registry.openForRefresh(grant.grantId, 0), { name: 'StoreUnavailable' }, 'a refresh does fail: it needs its grant')
})
