/** 100,000 grants in a SQLite file: paginated listings, bounded memory (test/support/grant-scale.ts). */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { walk } from '../support/grant-scale.ts'

t.test('a SQLite file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grant-scale-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const storage = new SqliteGrantStorage(join(dir, 'state.sqlite'))
  t.teardown(() => storage.close())
  await walk(t, storage)
})

