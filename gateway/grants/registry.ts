/**
 * The grant registry: every connection as a record ops and users can see and
 * end. The token endpoint creates a grant on each code exchange and goes
 * through it on each refresh; the admin API and the connections page list and
 * revoke; blocks are kept here and cached, so every replica applies a new one
 * within a second. Storage (state/grant-storage.ts) only keeps records; the
 * rules (lifetimes, who may end what, what ending does upstream) are here.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { RegisteredClient } from '../clients/client.ts'
import { clientHandle } from '../clients/registry.ts'
import { OAuthError, invalidGrant, invalidRequest } from '../errors.ts'
import { firstBlockApplying, hostOf, normaliseBlockValue, type BlockSubject } from '../policy/blocks.ts'
import { presetOf } from '../policy/presets.ts'
import type { GrantStorage } from '../state/grant-storage.ts'
import { nowSeconds, type Sealer } from '../state/seal.ts'
import type { Actor, Block, BlockKind, ClientRecord, ClientSummary, EndReason, Grant, GrantSummary, GrantUser, Page, PageRequest, Revocation, RevokeOutcome, UpstreamRevocation } from './grant.ts'

const DAY = 24 * 60 * 60
/** An access token whose lifetime the upstream did not tell is assumed to live this long (front mode refuses it until then). */
const ACCESS_TOKEN_DEFAULT_SECONDS = 3600
/** The most access tokens remembered per grant: a client holds one at a time; a few cover refreshes racing each other. */
const ACCESS_TOKENS_KEPT = 4
/** How stale the cached blocks may be: a new block applies on every replica within this (and the reload's round trip). */
export const BLOCKS_REFRESH_MS = 500
export const DEFAULT_PAGE_SIZE = 100
export const MAX_PAGE_SIZE = 1000

export interface GrantSettings {
  /** A grant unused for this long ends. */
  maxIdleDays: number
  /** A grant ends this long after it was created, however much it is used. */
  maxAgeDays: number
}

/** What the registry tells metrics. */
export interface GrantObserver {
  grantCreated(): void
  grantEnded(reason: EndReason, count?: number): void
}

/** What the registry may ask of the rest of the gateway. */
export interface RegistryOptions {
  storage: GrantStorage
  sealer: Sealer
  settings: GrantSettings
  /** RFC 7009 at the upstream for a refresh token of this client's grant (upstream/index.ts `revokeRefreshToken`). */
  revokeUpstream: (refreshToken: string, clientId: string) => Promise<UpstreamRevocation>
  observer?: GrantObserver | undefined
  /** Where failures outside any request are told (a failed upstream revocation, a failed block reload). */
  log?: { warn(details: object, message: string): void } | undefined
}

/** What a code exchange hands the registry to make a grant of. */
export interface NewGrant {
  client: RegisteredClient
  /** The redirect URI the code was issued for. */
  redirectUri: string
  scope?: string | undefined
  user?: GrantUser | undefined
  /** The upstream's refresh token, in clear: the registry seals it. */
  upstreamRefreshToken: string
  /** The upstream refresh token's own lifetime, when the upstream tells it (`refresh_token_expires_in`). */
  upstreamRefreshExpiresIn?: number | undefined
  accessToken?: IssuedAccessToken | undefined
  flow?: string | undefined
  resource?: string | undefined
}

export interface IssuedAccessToken {
  token: string
  expiresIn?: number | undefined
}

/** What a refresh at the upstream gave, for the grant to remember. */
export interface Refreshed {
  /** Present when the upstream rotated its refresh token. */
  upstreamRefreshToken?: string | undefined
  upstreamRefreshExpiresIn?: number | undefined
  accessToken?: IssuedAccessToken | undefined
}

export type RevokeFilter = { clientId: string } | { user: string }

/** Told of each grant a bulk end (revokeWhere, addBlock) ended, and of its upstream revocation. */
export type OnEnded = (grantId: string, upstreamRevocation: UpstreamRevocation) => void

/** The upstream refresh token of a grant, opened. */
export interface OpenedGrant {
  grant: Grant
  upstreamRefreshToken: string
}

export class GrantRegistry {
  readonly #storage: GrantStorage
  readonly #sealer: Sealer
  readonly #settings: GrantSettings
  readonly #revokeUpstream: RegistryOptions['revokeUpstream']
  readonly #observer: GrantObserver | undefined
  readonly #log: RegistryOptions['log']
  #blocks: Block[] = []
  #blocksLoadedAt = 0
  #blocksLoading: Promise<void> | undefined
  /** Told once when reloading starts failing, not twice a second while storage is away. */
  #blocksFailing = false
  readonly #blockTimer: NodeJS.Timeout

  constructor(options: RegistryOptions) {
    this.#storage = options.storage
    this.#sealer = options.sealer
    this.#settings = options.settings
    this.#revokeUpstream = options.revokeUpstream
    this.#observer = options.observer
    this.#log = options.log
    this.#blockTimer = setInterval(() => void this.#reloadBlocks().catch(() => {}), BLOCKS_REFRESH_MS).unref()
  }

  get storage(): GrantStorage {
    return this.#storage
  }

  // --- the token endpoint ----------------------------------------------------

  /** A new grant for a code exchange that gave an upstream refresh token. */
  async create(input: NewGrant): Promise<Grant> {
    const now = nowSeconds()
    const ageEnd = now + this.#settings.maxAgeDays * DAY
    const upstreamEnd = input.upstreamRefreshExpiresIn === undefined ? Infinity : now + input.upstreamRefreshExpiresIn
    const expiresAt = Math.min(ageEnd, upstreamEnd)
    const grant: Grant = {
      grantId: newGrantId(),
      clientId: input.client.client_id,
      clientName: input.client.client_name,
      unverified: input.client.metadata_document !== true,
      redirectHost: hostOf(input.redirectUri),
      preset: presetOf(input.redirectUri),
      user: input.user,
      scope: input.scope,
      createdAt: now,
      lastUsedAt: now,
      refreshCount: 0,
      expiresAt,
      activeUntil: Math.min(expiresAt, now + this.#settings.maxIdleDays * DAY),
      upstreamRefreshToken: this.#sealer.seal('stored', { rt: input.upstreamRefreshToken }),
      generation: 0,
      accessTokens: input.accessToken ? [accessTokenMark(input.accessToken, now)] : [],
      flow: input.flow,
      resource: input.resource,
    }
    // A client that holds a grant is in the client list, even one that never registered here (a metadata document).
    await Promise.all([this.#storage.createGrant(grant), this.recordClient(input.client)])
    this.#observer?.grantCreated()
    return grant
  }

  /**
   * The grant a refresh token names, with its upstream refresh token, when it
   * may be refreshed: otherwise invalid_grant (RFC 6749 §5.2) saying why. An
   * expired grant is ended here, its upstream refresh token revoked.
   */
  async openForRefresh(grantId: string, generation: number): Promise<OpenedGrant> {
    const grant = await this.#storage.getGrant(grantId)
    const now = nowSeconds()
    if (!grant) throw invalidGrant(await this.#goneDescription(grantId))
    if (grant.activeUntil <= now) {
      await this.#end(grantId, 'expired')
      throw invalidGrant('refresh_token: its grant expired (unused for too long, or too old); connect the app again')
    }
    if (generation !== grant.generation) throw invalidGrant('refresh_token: was replaced by a newer refresh token (RFC 9700 section 4.14.2); use the latest one')
    const opened = this.#sealer.open<{ rt: string }>('stored', grant.upstreamRefreshToken)
    if (!opened) throw invalidGrant('refresh_token: its grant was sealed with a key the gateway no longer has; connect the app again')
    return { grant, upstreamRefreshToken: opened.rt }
  }

  /** Records a successful refresh: last use, count, the rotated upstream token, the new access token. */
  async refreshed(grant: Grant, refreshed: Refreshed): Promise<Grant> {
    const now = nowSeconds()
    const rotated = refreshed.upstreamRefreshToken !== undefined
    const expiresAt = Math.max(now, refreshedEnd(grant, refreshed, now, grant.createdAt + this.#settings.maxAgeDays * DAY))
    const accessTokens = grant.accessTokens.filter((mark) => mark.expiresAt > now)
    if (refreshed.accessToken) accessTokens.push(accessTokenMark(refreshed.accessToken, now))
    const next: Grant = {
      ...grant,
      lastUsedAt: now,
      refreshCount: grant.refreshCount + 1,
      expiresAt,
      activeUntil: Math.min(expiresAt, now + this.#settings.maxIdleDays * DAY),
      upstreamRefreshToken: rotated ? this.#sealer.seal('stored', { rt: refreshed.upstreamRefreshToken }) : grant.upstreamRefreshToken,
      generation: rotated ? grant.generation + 1 : grant.generation,
      accessTokens: accessTokens.slice(-ACCESS_TOKENS_KEPT),
    }
    if (!(await this.#storage.updateGrant(next, grant.generation))) {
      // The grant ended (or moved on) while the upstream refreshed: a rotated upstream token is kept nowhere, so it is revoked.
      if (refreshed.upstreamRefreshToken !== undefined) await this.#revokeQuietly(refreshed.upstreamRefreshToken, grant, 'the upstream did not revoke the refresh token it rotated for a grant that ended during the refresh')
      throw invalidGrant('refresh_token: its grant ended while the refresh ran')
    }
    return next
  }

  /**
   * Front mode: whether an access token was issued under a grant that has
   * ended by revocation or block. While storage does not answer (Redis away)
   * it says no, logged once: the MCP server still checks every token with
   * the upstream, and MCP traffic does not stop with Redis.
   */
  async isAccessTokenRevoked(accessToken: string): Promise<boolean> {
    try {
      const revoked = (await this.#storage.getRevocation(`access:${tokenHash(accessToken)}`)) !== undefined
      this.#revocationsFailing = false
      return revoked
    } catch (err) {
      if (!this.#revocationsFailing) this.#log?.warn({ err: (err as Error).message }, 'revoked access tokens cannot be checked while storage does not answer; the MCP server still checks tokens with the upstream')
      this.#revocationsFailing = true
      return false
    }
  }

  #revocationsFailing = false

  /**
   * Upgrade: a refresh token issued before grants is accepted once. True the
   * first time this upstream refresh token is seen; the mark lasts grants.maxAgeDays.
   */
  async adoptLegacyToken(upstreamRefreshToken: string): Promise<boolean> {
    const now = nowSeconds()
    return this.#storage.addRevocationOnce({ key: legacyKey(upstreamRefreshToken), reason: 'upgrade', endedAt: now, expiresAt: now + this.#settings.maxAgeDays * DAY })
  }

  /**
   * Takes back adoptLegacyToken's mark, so the token can be presented again:
   * its upgrade failed before the upstream gave anything. Never throws, so the
   * client hears the upstream's failure; a mark left behind is logged.
   */
  async releaseLegacyToken(upstreamRefreshToken: string): Promise<void> {
    try {
      await this.#storage.removeRevocation(legacyKey(upstreamRefreshToken))
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, 'a refresh token from before grants stays spent although its upgrade failed: storage did not answer')
    }
  }

  /** Counts a legacy refresh token that became a grant (its old form ended by the upgrade). */
  upgraded(): void {
    this.#observer?.grantEnded('upgrade')
  }

  // --- listings --------------------------------------------------------------

  async get(grantId: string): Promise<GrantSummary | undefined> {
    const grant = await this.#storage.getGrant(grantId)
    return grant && grant.activeUntil > nowSeconds() ? summary(grant) : undefined
  }

  /** The live grants of one user, in creation order. */
  listForUser(userId: string, page: PageRequest = {}): Promise<Page<GrantSummary>> {
    return this.list({ user: userId }, page)
  }

  /** Live grants, optionally of one user and/or one client, in creation order. */
  async list(filter: { user?: string | undefined; clientId?: string | undefined }, page: PageRequest = {}): Promise<Page<GrantSummary>> {
    const limit = pageSize(page.limit)
    const after = openCursor(page.cursor)
    const now = nowSeconds()
    const found = await this.#storage.listGrants({ userId: filter.user, clientId: filter.clientId }, limit, after)
    return { items: found.items.filter((grant) => grant.activeUntil > now).map(summary), nextCursor: makeCursor(found.last) }
  }

  // --- ending grants ---------------------------------------------------------

  /**
   * Ends one grant and revokes its upstream refresh token. With `user`, only
   * that user's grant ends: another user's grant id ends nothing (and says so
   * no differently from an unknown id).
   */
  async revokeGrant(grantId: string, actor: Actor, options: { user?: string | undefined } = {}): Promise<RevokeOutcome> {
    if (options.user !== undefined && typeof options.user !== 'string') throw invalidRequest('user: must be a string')
    return this.#end(grantId, actor === 'admin' ? 'revoked_by_admin' : 'revoked_by_user', options.user)
  }

  /** Ends every grant of a client or of a user; returns how many ended. */
  async revokeWhere(filter: RevokeFilter, reason: EndReason = 'revoked_by_admin', onEnded?: OnEnded): Promise<number> {
    const query = 'clientId' in filter ? { clientId: filter.clientId } : { userId: filter.user }
    return this.#endAll((after) => this.#storage.listGrants(query, MAX_PAGE_SIZE, after).then((page) => ({ ids: page.items.map((grant) => grant.grantId), last: page.last })), reason, onEnded)
  }

  /** Ends grants that expired, with their upstream tokens; run now and then (app.ts). */
  async purgeExpired(): Promise<number> {
    const expired = await this.#storage.purgeExpired(nowSeconds())
    if (expired.length) this.#observer?.grantEnded('expired', expired.length)
    await Promise.all(expired.map((grant) => this.#revokeStored(grant)))
    return expired.length
  }

  /** `onEnded` hears each grant that ended and what the upstream did with its refresh token, e.g. for the audit line and the answer. */
  async #endAll(pages: (after: string | undefined) => Promise<{ ids: string[]; last?: string | undefined }>, reason: EndReason, onEnded?: OnEnded): Promise<number> {
    let ended = 0
    let after: string | undefined
    do {
      const page = await pages(after)
      for (const grantId of page.ids) {
        const outcome = await this.#end(grantId, reason)
        if (!outcome.ended) continue
        ended++
        onEnded?.(grantId, outcome.upstreamRevocation)
      }
      after = page.last
    } while (after !== undefined)
    return ended
  }

  async #end(grantId: string, reason: EndReason, userId?: string): Promise<RevokeOutcome> {
    const now = nowSeconds()
    const ended = await this.#storage.endGrant(grantId, (grant) => endRevocations(grant, reason, now), userId)
    if (!ended) return { ended: false, upstreamRevocation: 'unsupported' }
    this.#observer?.grantEnded(reason)
    return { ended: true, upstreamRevocation: await this.#revokeStored(ended) }
  }

  /** RFC 7009 at the upstream for an ended grant's refresh token. */
  async #revokeStored(grant: Grant): Promise<UpstreamRevocation> {
    const opened = this.#sealer.open<{ rt: string }>('stored', grant.upstreamRefreshToken)
    if (!opened) return 'failed'
    return this.#revokeQuietly(opened.rt, grant, 'the upstream did not revoke the refresh token of an ended grant')
  }

  /** RFC 7009 at the upstream for a refresh token of this grant; a failure is logged (without the token), never thrown: the grant has ended here. */
  async #revokeQuietly(upstreamRefreshToken: string, grant: Grant, failure: string): Promise<UpstreamRevocation> {
    try {
      return await this.#revokeUpstream(upstreamRefreshToken, grant.clientId)
    } catch (err) {
      this.#log?.warn({ grant_id: grant.grantId, err: (err as Error).message }, failure)
      return 'failed'
    }
  }

  async #goneDescription(grantId: string): Promise<string> {
    const revocation = await this.#storage.getRevocation(`grant:${grantId}`)
    if (!revocation) return 'refresh_token: its grant does not exist any more (it expired or was removed); connect the app again'
    const why: Record<EndReason, string> = {
      revoked_by_user: 'the user disconnected this app',
      revoked_by_admin: 'an administrator revoked it',
      block: 'an administrator blocked this app',
      expired: 'it expired',
      upgrade: 'it was replaced',
    }
    return `refresh_token: its grant has ended (${why[revocation.reason]}); connect the app again`
  }

  // --- blocks ----------------------------------------------------------------

  /** Adds a block and ends the grants it matches (reason `block`). */
  async addBlock(input: { kind: BlockKind; value: string; reason: string }, onEnded?: OnEnded): Promise<{ block: Block; ended: number }> {
    const block: Block = { blockId: newBlockId(), kind: input.kind, value: normaliseBlockValue(input.kind, input.value), reason: input.reason, createdAt: nowSeconds() }
    await this.#storage.addBlock(block)
    this.#blocks = [...this.#blocks, block]
    const ended = await this.#endAll(async (after) => {
      const page = await this.#storage.listGrants({}, MAX_PAGE_SIZE, after)
      const ids = page.items.filter((grant) => firstBlockApplying([block], grantSubject(grant)) !== undefined).map((grant) => grant.grantId)
      return { ids, last: page.last }
    }, 'block', onEnded)
    return { block, ended }
  }

  async removeBlock(blockId: string): Promise<boolean> {
    const removed = await this.#storage.removeBlock(blockId)
    if (removed) this.#blocks = this.#blocks.filter((block) => block.blockId !== blockId)
    return removed
  }

  async listBlocks(): Promise<Block[]> {
    return this.#storage.listBlocks()
  }

  /**
   * The block that applies to a client, if any, from a cache at most ~1 s old.
   * While storage does not answer, the last blocks loaded still apply: no
   * block can be added through storage that is down. Before any load
   * succeeded there is nothing to answer from, so it fails (503).
   */
  async isBlocked(subject: BlockSubject): Promise<Block | undefined> {
    if (Date.now() - this.#blocksLoadedAt > 2 * BLOCKS_REFRESH_MS) {
      await this.#reloadBlocks().catch((err: unknown) => {
        if (this.#blocksLoadedAt === 0) throw err
      })
    }
    return firstBlockApplying(this.#blocks, subject)
  }

  /**
   * The block that applies to a sign-in under way (the consent answer, the
   * callback), known only by its client's handle and redirect URI: a client
   * id block by the handle of its id, a redirect host block. A name pattern
   * needs the client, and is checked at /authorize and /token.
   */
  async isFlowBlocked(handle: string, redirectUri: string): Promise<Block | undefined> {
    const byHost = await this.isBlocked({ redirectUris: [redirectUri] })
    return byHost ?? this.#blocks.find((block) => block.kind === 'client_id' && clientHandle(block.value) === handle)
  }

  /** How many blocks there are, from the cache (the blocks gauge). */
  get blockCount(): number {
    return this.#blocks.length
  }

  #reloadBlocks(): Promise<void> {
    this.#blocksLoading ??= this.#storage.listBlocks().then(
      (blocks) => {
        this.#blocks = blocks
        this.#blocksLoadedAt = Date.now()
        this.#blocksLoading = undefined
        this.#blocksFailing = false
      },
      (err: unknown) => {
        this.#blocksLoading = undefined
        if (!this.#blocksFailing) this.#log?.warn({ err: (err as Error).message }, 'the blocks could not be reloaded; the last ones known still apply until storage answers')
        this.#blocksFailing = true
        throw err
      },
    )
    return this.#blocksLoading
  }

  // --- clients ---------------------------------------------------------------

  /**
   * Notes a client the gateway met (registration, metadata document, grant);
   * keeps its first_seen. Never fails: the list is for ops to look at, and
   * registration must go on while storage is away (Redis down); a client
   * missed then is noted at its next sign-in.
   */
  async recordClient(client: RegisteredClient): Promise<void> {
    const now = nowSeconds()
    const record: ClientRecord = { clientId: client.client_id, clientName: client.client_name, redirectUris: client.redirect_uris, firstSeenAt: now, lastUsedAt: now, applicationType: client.application_type }
    try {
      await this.#storage.recordClient(record)
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, 'a client could not be added to the client list; it is added at its next sign-in')
    }
  }

  /** Every client met, in the order first seen... by key, with its live grant count. */
  async listClients(page: PageRequest = {}): Promise<Page<ClientSummary>> {
    const found = await this.#storage.listClients(pageSize(page.limit), openCursor(page.cursor))
    return { items: found.items, nextCursor: makeCursor(found.last) }
  }

  async countGrants(): Promise<number> {
    return this.#storage.countGrants()
  }

  /** Loads the blocks before the first request needs them; storage not reachable yet (Redis connecting) is retried by the timer. */
  async start(): Promise<void> {
    await this.#reloadBlocks().catch(() => {})
  }

  close(): void {
    clearInterval(this.#blockTimer)
  }
}

/** sha-256, base64url: what is kept of a token the gateway must recognise but never hold. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

function legacyKey(upstreamRefreshToken: string): string {
  return `legacy:${tokenHash(upstreamRefreshToken)}`
}

/** Time-ordered (listings are in creation order) and unguessable. */
function newGrantId(): string {
  return `g_${Date.now().toString(36).padStart(9, '0')}${randomBytes(12).toString('base64url')}`
}

function newBlockId(): string {
  return `b_${Date.now().toString(36).padStart(9, '0')}${randomBytes(6).toString('base64url')}`
}

/**
 * When a refreshed grant ends at the latest. A rotated upstream token with
 * its own lifetime sets the end anew, up to grants.maxAgeDays from creation;
 * a lifetime told for the same token can only bring the end closer (it is
 * what is left of it); nothing told keeps the end.
 */
function refreshedEnd(grant: Grant, refreshed: Refreshed, now: number, ageEnd: number): number {
  if (refreshed.upstreamRefreshExpiresIn === undefined) return grant.expiresAt
  const upstreamEnd = now + refreshed.upstreamRefreshExpiresIn
  return Math.min(refreshed.upstreamRefreshToken !== undefined ? ageEnd : grant.expiresAt, upstreamEnd)
}

function accessTokenMark(accessToken: IssuedAccessToken, now: number) {
  return { hash: tokenHash(accessToken.token), expiresAt: now + (accessToken.expiresIn ?? ACCESS_TOKEN_DEFAULT_SECONDS) }
}

/** What ending a grant leaves behind: its own mark (why it ended) and one per access token still live, for front mode. */
function endRevocations(grant: Grant, reason: EndReason, now: number): Revocation[] {
  const own: Revocation = { key: `grant:${grant.grantId}`, reason, endedAt: now, expiresAt: Math.max(grant.expiresAt, now + DAY) }
  const accessTokens = grant.accessTokens
    .filter((mark) => mark.expiresAt > now && reason !== 'expired')
    .map((mark): Revocation => ({ key: `access:${mark.hash}`, reason, endedAt: now, expiresAt: mark.expiresAt }))
  return [own, ...accessTokens]
}

function grantSubject(grant: Grant): BlockSubject {
  return { clientId: grant.clientId, redirectHost: grant.redirectHost, clientName: grant.clientName }
}

export function summary(grant: Grant): GrantSummary {
  const { upstreamRefreshToken: _token, accessTokens: _marks, generation: _generation, flow: _flow, resource: _resource, ...rest } = grant
  return rest
}

function pageSize(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) throw invalidRequest(`limit: must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
  return limit
}

/** Cursors are opaque to callers: the last key of the previous page, wrapped. */
function makeCursor(last: string | undefined): string | undefined {
  return last === undefined ? undefined : Buffer.from(JSON.stringify({ a: last })).toString('base64url')
}

function openCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined
  const bad = () => invalidRequest('cursor: is not a cursor from a previous page of this listing')
  if (typeof cursor !== 'string' || cursor.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad()
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { a?: unknown }
    if (typeof parsed?.a !== 'string' || parsed.a.length === 0 || parsed.a.length > 512) throw bad()
    return parsed.a
  } catch (err) {
    if (err instanceof OAuthError) throw err
    throw bad()
  }
}
