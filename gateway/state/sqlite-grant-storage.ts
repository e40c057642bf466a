/**
 * Grant storage in one SQLite file (node:sqlite), the default without Redis:
 * no server to run, and a restart loses nothing. WAL journal: a process
 * killed mid-write leaves the file as it was before or after that write, and
 * every commit survives the process. What must also survive a power loss or
 * a kernel crash (ending a grant, a revocation, a block) commits with
 * synchronous=FULL, on disk before the answer leaves; the frequent writes
 * (a refresh updating its grant, a client's last use) commit with
 * synchronous=NORMAL, which the next FULL commit or checkpoint puts on disk. One replica owns the file (several processes on one file work, but
 * only on one machine; replicas share Redis instead). `:memory:` keeps it in
 * memory, for tests.
 *
 * Each record is a JSON column beside the columns that index it.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import type { Block, ClientRecord, ClientSummary, Grant, Revocation } from '../grants/grant.ts'
import { clientKey, type GrantFilter, type GrantStorage, type KeyPage } from './grant-storage.ts'
import { nowSeconds } from './seal.ts'
import { StoreUnavailable } from './store.ts'

const SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE IF NOT EXISTS grants (
  grant_id TEXT PRIMARY KEY,
  client_key TEXT NOT NULL,
  user_id TEXT,
  active_until INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id, grant_id);
CREATE INDEX IF NOT EXISTS grants_by_client ON grants (client_key, grant_id);
CREATE INDEX IF NOT EXISTS grants_by_expiry ON grants (active_until);
CREATE TABLE IF NOT EXISTS revocations (
  key TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  ended_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_by_expiry ON revocations (expires_at);
CREATE TABLE IF NOT EXISTS blocks (
  block_id TEXT PRIMARY KEY,
  record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clients (
  client_key TEXT PRIMARY KEY,
  first_seen_at INTEGER NOT NULL,
  record TEXT NOT NULL
) WITHOUT ROWID;
`

/** Most expired grants ended per purge: a backlog is worked off over several runs, none long. */
const PURGE_BATCH = 1000

export class SqliteGrantStorage implements GrantStorage {
  readonly #db: DatabaseSync
  readonly #statements = new Map<string, StatementSync>()

  /** Opens (and on first start creates) the file at `path`, or an in-memory database for ':memory:'. */
  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    try {
      this.#db = new DatabaseSync(path, { timeout: 5000 })
      this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;')
      const version = (this.#db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
      if (version > SCHEMA_VERSION) throw new Error(`the state file ${path} was written by a newer gateway (schema ${version}; this one knows ${SCHEMA_VERSION})`)
      this.#db.exec(SCHEMA)
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)
    } catch (err) {
      throw new StoreUnavailable(`the state file ${path} cannot be opened: ${(err as Error).message}`, { cause: err })
    }
  }

  async createGrant(grant: Grant): Promise<void> {
    this.#run(() => this.#insertGrant(grant))
  }

  async createGrants(grants: readonly Grant[]): Promise<void> {
    this.#transaction(() => {
      for (const grant of grants) this.#insertGrant(grant)
    })
  }

  async getGrant(grantId: string): Promise<Grant | undefined> {
    const row = this.#run(() => this.#statement('SELECT record FROM grants WHERE grant_id = ?').get(grantId))
    return row ? (JSON.parse(row.record as string) as Grant) : undefined
  }

  async updateGrant(grant: Grant, expectedGeneration: number): Promise<boolean> {
    const result = this.#run(() =>
      this.#statement('UPDATE grants SET record = ?, generation = ?, active_until = ? WHERE grant_id = ? AND generation = ?')
        .run(JSON.stringify(grant), grant.generation, grant.activeUntil, grant.grantId, expectedGeneration),
    )
    return Number(result.changes) === 1
  }

  async endGrant(grantId: string, revocations: (grant: Grant) => Revocation[], userId?: string): Promise<Grant | undefined> {
    return this.#durably(() => {
      const row = this.#statement('SELECT record, user_id FROM grants WHERE grant_id = ?').get(grantId)
      if (!row || (userId !== undefined && row.user_id !== userId)) return undefined
      const grant = JSON.parse(row.record as string) as Grant
      this.#statement('DELETE FROM grants WHERE grant_id = ?').run(grantId)
      for (const revocation of revocations(grant)) this.#insertRevocation(revocation)
      return grant
    })
  }

  async listGrants(filter: GrantFilter, limit: number, after?: string): Promise<KeyPage<Grant>> {
    const where: string[] = ['grant_id > ?']
    const values: (string | number)[] = [after ?? '']
    if (filter.userId !== undefined) {
      where.push('user_id = ?')
      values.push(filter.userId)
    }
    if (filter.clientId !== undefined) {
      where.push('client_key = ?')
      values.push(clientKey(filter.clientId))
    }
    const rows = this.#run(() => this.#statement(`SELECT grant_id, record FROM grants WHERE ${where.join(' AND ')} ORDER BY grant_id LIMIT ?`).all(...values, limit + 1))
    const items = rows.slice(0, limit).map((row) => JSON.parse(row.record as string) as Grant)
    return { items, last: rows.length > limit ? items.at(-1)!.grantId : undefined }
  }

  async countGrants(): Promise<number> {
    return Number(this.#run(() => this.#statement('SELECT count(*) AS n FROM grants').get())!.n)
  }

  async addRevocations(revocations: readonly Revocation[]): Promise<void> {
    this.#durably(() => {
      for (const revocation of revocations) this.#insertRevocation(revocation)
    })
  }

  async getRevocation(key: string): Promise<Revocation | undefined> {
    const row = this.#run(() => this.#statement('SELECT key, reason, ended_at, expires_at FROM revocations WHERE key = ? AND expires_at > ?').get(key, nowSeconds()))
    return row ? { key: row.key as string, reason: row.reason as Revocation['reason'], endedAt: Number(row.ended_at), expiresAt: Number(row.expires_at) } : undefined
  }

  async addRevocationOnce(revocation: Revocation): Promise<boolean> {
    return this.#durably(() => {
      // An expired mark no longer counts: it is replaced.
      this.#statement('DELETE FROM revocations WHERE key = ? AND expires_at <= ?').run(revocation.key, nowSeconds())
      return this.#insertRevocation(revocation)
    })
  }

  async removeRevocation(key: string): Promise<void> {
    this.#durably(() => this.#statement('DELETE FROM revocations WHERE key = ?').run(key))
  }

  async addBlock(block: Block): Promise<void> {
    this.#durably(() => this.#statement('INSERT INTO blocks (block_id, record) VALUES (?, ?)').run(block.blockId, JSON.stringify(block)))
  }

  async removeBlock(blockId: string): Promise<boolean> {
    return Number(this.#durably(() => this.#statement('DELETE FROM blocks WHERE block_id = ?').run(blockId)).changes) === 1
  }

  async listBlocks(): Promise<Block[]> {
    return this.#run(() => this.#statement('SELECT record FROM blocks ORDER BY block_id').all()).map((row) => JSON.parse(row.record as string) as Block)
  }

  async recordClient(client: ClientRecord): Promise<void> {
    this.#transaction(() => {
      const key = clientKey(client.clientId)
      const row = this.#statement('SELECT first_seen_at, record FROM clients WHERE client_key = ?').get(key)
      const firstSeenAt = row ? Number(row.first_seen_at) : client.firstSeenAt
      const applicationType = (row ? (JSON.parse(row.record as string) as ClientRecord).applicationType : undefined) ?? client.applicationType
      this.#statement('INSERT OR REPLACE INTO clients (client_key, first_seen_at, record) VALUES (?, ?, ?)').run(key, firstSeenAt, JSON.stringify({ ...client, firstSeenAt, applicationType }))
    })
  }

  async listClients(limit: number, after?: string): Promise<KeyPage<ClientSummary>> {
    const rows = this.#run(() =>
      this.#statement(`SELECT c.client_key, c.record, (SELECT count(*) FROM grants g WHERE g.client_key = c.client_key AND g.active_until > ?) AS grants
        FROM clients c WHERE c.client_key > ? ORDER BY c.client_key LIMIT ?`).all(nowSeconds(), after ?? '', limit + 1),
    )
    const page = rows.slice(0, limit)
    const items = page.map((row) => ({ ...(JSON.parse(row.record as string) as ClientRecord), grants: Number(row.grants) }))
    return { items, last: rows.length > limit ? (page.at(-1)!.client_key as string) : undefined }
  }

  async purgeExpired(now: number): Promise<Grant[]> {
    return this.#transaction(() => {
      const rows = this.#statement('SELECT grant_id, record FROM grants WHERE active_until <= ? LIMIT ?').all(now, PURGE_BATCH)
      const remove = this.#statement('DELETE FROM grants WHERE grant_id = ?')
      for (const row of rows) remove.run(row.grant_id as string)
      this.#statement('DELETE FROM revocations WHERE expires_at <= ?').run(now)
      return rows.map((row) => JSON.parse(row.record as string) as Grant)
    })
  }

  async ping(): Promise<boolean> {
    try {
      this.#statement('SELECT 1').get()
      return true
    } catch {
      return false
    }
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close()
  }

  #insertGrant(grant: Grant) {
    this.#statement('INSERT INTO grants (grant_id, client_key, user_id, active_until, generation, record) VALUES (?, ?, ?, ?, ?, ?)')
      .run(grant.grantId, clientKey(grant.clientId), grant.user?.id ?? null, grant.activeUntil, grant.generation, JSON.stringify(grant))
  }

  /** True when written; an existing revocation keeps its first reason. */
  #insertRevocation(revocation: Revocation): boolean {
    const result = this.#statement('INSERT OR IGNORE INTO revocations (key, reason, ended_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(revocation.key, revocation.reason, revocation.endedAt, revocation.expiresAt)
    return Number(result.changes) === 1
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql)
    if (!statement) this.#statements.set(sql, (statement = this.#db.prepare(sql)))
    return statement
  }

  /** A failure of the file (full disk, locked too long, closed) is answered 503; the cause goes to the log. */
  #run<T>(work: () => T): T {
    try {
      return work()
    } catch (err) {
      throw new StoreUnavailable(`the state file: ${(err as Error).message}`, { cause: err })
    }
  }

  /** A transaction that is on disk, with everything committed before it, when it returns (synchronous=FULL for its commit). */
  #durably<T>(work: () => T): T {
    this.#run(() => this.#db.exec('PRAGMA synchronous = FULL'))
    try {
      return this.#transaction(work)
    } finally {
      this.#run(() => this.#db.exec('PRAGMA synchronous = NORMAL'))
    }
  }

  /** All or nothing: a failure part-way leaves the file as it was. */
  #transaction<T>(work: () => T): T {
    return this.#run(() => {
      this.#db.exec('BEGIN IMMEDIATE')
      try {
        const result = work()
        this.#db.exec('COMMIT')
        return result
      } catch (err) {
        this.#db.exec('ROLLBACK')
        throw err
      }
    })
  }
}
