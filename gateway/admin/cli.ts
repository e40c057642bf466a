/**
 * `npm run admin -- <verb> …` (`node gateway/admin/cli.ts`): the Admin API
 * from the command line. It calls the gateway at GATEWAY_URL with
 * ADMIN_TOKEN (both from the environment: a token on the command line would
 * show in `ps` and the shell history), prints tables for people or the raw
 * JSON with --json, and exits 0 on success, 1 when the gateway refused or
 * could not be reached, 2 for bad usage.
 */
import { parseArgs } from 'node:util'

const USAGE = `Usage: npm run admin -- <verb> [options]   (node gateway/admin/cli.ts <verb> [options])

The gateway's Admin API from the command line. It needs two environment variables:
  GATEWAY_URL    where the gateway answers, e.g. https://oauth.neonpanel.com
                 or http://127.0.0.1:8080 from inside the cluster
  ADMIN_TOKEN    the gateway's ADMIN_TOKEN

Verbs:
  clients [--limit N] [--cursor C] [--all]
        the clients the gateway has met, their live grants, whether blocked
  grants [--user U] [--client-id ID] [--limit N] [--cursor C] [--all]
        the live grants (connections), of one user and/or one client
  revoke <grant_id>
  revoke --client-id ID | --user U
        ends one grant, or every grant of a client or of a user; their
        upstream refresh tokens are revoked too
  block (--client-id ID | --redirect-host HOST | --name-pattern PATTERN) --reason TEXT
        refuses a client, every client redirecting to HOST, or every client
        whose name matches PATTERN (* any run, ? one character, any case);
        ends the grants it matches
  unblock <block_id>
  blocks
        the blocks, with their reasons

Options:
  --limit N      a page of N (1 to 1000, default 100)
  --cursor C     the page after the one that printed this cursor
  --all          every page, one after the other
  --json         the gateway's JSON answer instead of a table
  -h, --help     this text

Exit code: 0 done, 1 the gateway refused or could not be reached, 2 bad usage.`

const OPTIONS = {
  limit: { type: 'string' },
  cursor: { type: 'string' },
  all: { type: 'boolean' },
  user: { type: 'string' },
  'client-id': { type: 'string' },
  'redirect-host': { type: 'string' },
  'name-pattern': { type: 'string' },
  reason: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values']

class UsageError extends Error {}

/** The gateway refused (an OAuth-style error) or could not be reached. */
class CallFailed extends Error {}

interface Call {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  body?: Record<string, string>
}

interface Connection {
  url: string
  token: string
}

/** One Admin API call: the parsed JSON answer (null for 204), or CallFailed naming what the gateway said. */
async function request(connection: Connection, call: Call): Promise<any> {
  let response: Response
  try {
    response = await fetch(new URL(call.path, connection.url), {
      method: call.method,
      headers: { authorization: `Bearer ${connection.token}`, accept: 'application/json', ...(call.body ? { 'content-type': 'application/json' } : {}) },
      body: call.body ? JSON.stringify(call.body) : undefined,
      redirect: 'manual',
      signal: AbortSignal.timeout(30_000),
    })
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
    throw new CallFailed(`cannot reach the gateway at ${connection.url}: ${cause}`)
  }
  const text = await response.text()
  let body: any = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    throw new CallFailed(`the gateway answered ${call.method} ${call.path} with ${response.status} and no JSON (is GATEWAY_URL the gateway?)`)
  }
  if (response.status >= 400) {
    const hint = response.status === 401 ? ' (check ADMIN_TOKEN)' : response.status === 404 && body?.error_description?.startsWith('no such endpoint') ? ' (is the Admin API on? the gateway needs ADMIN_TOKEN set)' : ''
    throw new CallFailed(`${body?.error_description ?? 'the gateway refused'} (${body?.error ?? 'error'}, HTTP ${response.status})${hint}`)
  }
  return body
}

function pageQuery(values: Values, extra: Record<string, string | undefined> = {}, cursor = values.cursor): string {
  const query = new URLSearchParams()
  for (const [name, value] of Object.entries({ ...extra, limit: values.limit, cursor })) if (value !== undefined) query.set(name, value)
  const text = query.toString()
  return text ? `?${text}` : ''
}

/** A listing, one page or (--all) every page; the items under `key` and the cursor of the next page. */
async function listing(connection: Connection, values: Values, path: string, key: string, extra: Record<string, string | undefined> = {}) {
  const items: unknown[] = []
  let cursor = values.cursor
  for (;;) {
    const page = await request(connection, { method: 'GET', path: `${path}${pageQuery(values, extra, cursor)}` })
    items.push(...page[key])
    cursor = page.next_cursor ?? undefined
    if (!values.all || cursor === undefined) return { items, nextCursor: cursor as string | undefined }
  }
}

/** Columns padded to their widest cell; the last column (a long client id) is never padded. */
function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => row[column]!.length)))
  const line = (cells: string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')
  return [line(headers), ...rows.map(line)].join('\n')
}

const time = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-')
const text = (value: unknown) => (value === null || value === undefined || value === '' ? '-' : String(value))

function only(values: Values, names: Array<keyof Values>, verb: string) {
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && !['json', 'help', ...names].includes(name)) throw new UsageError(`${verb}: --${name} does not apply here`)
  }
}

/** What the upstream did with the ended grants' refresh tokens, when not all were revoked there. */
function upstreamNote(answer: { upstream_revocation?: string; upstream_revocation_failed?: number }): string {
  if (answer.upstream_revocation === 'unsupported') return '\nThe upstream has no revocation endpoint: their refresh tokens stay valid there until they expire.'
  if (answer.upstream_revocation === 'failed') return `\nThe upstream did not revoke ${answer.upstream_revocation_failed} of their refresh tokens (see the gateway's log); the gateway never uses them again.`
  return ''
}

function morePages(nextCursor: string | undefined): string {
  return nextCursor === undefined ? '' : `\nMore: add --cursor ${nextCursor} (or --all)`
}

async function run(verb: string | undefined, args: string[], values: Values, connection: Connection): Promise<string> {
  const one = (what: string) => {
    if (args.length !== 1) throw new UsageError(`${verb} needs one ${what}`)
    return args[0]!
  }
  const none = () => {
    if (args.length) throw new UsageError(`${verb} takes no argument (got ${args.join(' ')})`)
  }
  switch (verb) {
    case 'clients': {
      none()
      only(values, ['limit', 'cursor', 'all'], verb)
      const { items, nextCursor } = await listing(connection, values, '/admin/clients', 'clients')
      if (values.json) return JSON.stringify({ clients: items, next_cursor: nextCursor ?? null }, null, 2)
      const rows = (items as any[]).map((c) => [text(c.client_name), String(c.grants), c.blocked ? `yes ${c.block_id ?? ''}`.trim() : 'no', time(c.first_seen_at), time(c.last_used_at), c.redirect_uris.join(' '), c.client_id])
      return `${table(['NAME', 'GRANTS', 'BLOCKED', 'FIRST SEEN', 'LAST USED', 'REDIRECT URIS', 'CLIENT ID'], rows)}\n${items.length} client(s)${morePages(nextCursor)}`
    }
    case 'grants': {
      none()
      only(values, ['limit', 'cursor', 'all', 'user', 'client-id'], verb)
      const { items, nextCursor } = await listing(connection, values, '/admin/grants', 'grants', { user: values.user, client_id: values['client-id'] })
      if (values.json) return JSON.stringify({ grants: items, next_cursor: nextCursor ?? null }, null, 2)
      const rows = (items as any[]).map((g) => [g.grant_id, text(g.user), text(g.client_name), text(g.scope), time(g.created_at), time(g.last_used_at), g.client_id])
      return `${table(['GRANT ID', 'USER', 'CLIENT', 'SCOPE', 'CREATED', 'LAST USED', 'CLIENT ID'], rows)}\n${items.length} grant(s)${morePages(nextCursor)}`
    }
    case 'revoke': {
      only(values, ['user', 'client-id'], verb)
      const filters = [values['client-id'] === undefined ? [] : [['client_id', values['client-id']]], values.user === undefined ? [] : [['user', values.user]]].flat() as Array<[string, string]>
      if (args.length && filters.length) throw new UsageError('revoke: give either a grant id or --client-id / --user, not both')
      if (args.length) {
        const grantId = one('grant id')
        await request(connection, { method: 'DELETE', path: `/admin/grants/${encodeURIComponent(grantId)}` })
        return values.json ? JSON.stringify({ revoked: 1, grant_id: grantId }) : `Revoked grant ${grantId}.`
      }
      if (filters.length !== 1) throw new UsageError('revoke needs a grant id, or exactly one of --client-id and --user')
      const answer = await request(connection, { method: 'POST', path: '/admin/grants/revoke', body: Object.fromEntries(filters) })
      if (values.json) return JSON.stringify(answer, null, 2)
      return `Revoked ${answer.revoked} grant(s) of ${filters[0]![0] === 'user' ? 'user' : 'client'} ${filters[0]![1]}.${upstreamNote(answer)}`
    }
    case 'block': {
      none()
      only(values, ['client-id', 'redirect-host', 'name-pattern', 'reason'], verb)
      const keys = ([['client_id', values['client-id']], ['redirect_host', values['redirect-host']], ['client_name_pattern', values['name-pattern']]] as const).filter(([, value]) => value !== undefined)
      if (keys.length !== 1) throw new UsageError('block needs exactly one of --client-id, --redirect-host, --name-pattern')
      if (!values.reason) throw new UsageError('block needs --reason: it is logged and shown to whoever the block refuses')
      const answer = await request(connection, { method: 'POST', path: '/admin/blocks', body: { [keys[0]![0]]: keys[0]![1]!, reason: values.reason } })
      return values.json ? JSON.stringify(answer, null, 2) : `Blocked: ${answer.block_id} (${answer.revoked} grant(s) ended). It applies on every replica within a second.${upstreamNote(answer)}`
    }
    case 'unblock': {
      only(values, [], verb)
      const blockId = one('block id')
      await request(connection, { method: 'DELETE', path: `/admin/blocks/${encodeURIComponent(blockId)}` })
      return values.json ? JSON.stringify({ unblocked: blockId }) : `Unblocked ${blockId}.`
    }
    case 'blocks': {
      none()
      only(values, [], verb)
      const answer = await request(connection, { method: 'GET', path: '/admin/blocks' })
      if (values.json) return JSON.stringify(answer, null, 2)
      const rows = (answer.blocks as any[]).map((b) => {
        const [kind, value] = (['client_id', 'redirect_host', 'client_name_pattern'] as const).map((key) => [key, b[key]] as const).find(([, v]) => v !== undefined)!
        return [b.block_id, kind, time(b.created_at), b.reason, value]
      })
      return `${table(['BLOCK ID', 'KIND', 'CREATED', 'REASON', 'VALUE'], rows)}\n${rows.length} block(s)`
    }
    case undefined:
      throw new UsageError('a verb is required: clients, grants, revoke, block, unblock, blocks')
    default:
      throw new UsageError(`unknown verb ${verb}: clients, grants, revoke, block, unblock, blocks`)
  }
}

function connectionFromEnv(env: NodeJS.ProcessEnv): Connection {
  const url = env.GATEWAY_URL
  const token = env.ADMIN_TOKEN
  if (!url) throw new UsageError('GATEWAY_URL is not set: where the gateway answers, e.g. http://127.0.0.1:8080')
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) throw new UsageError('GATEWAY_URL must be an http:// or https:// URL')
  if (!token) throw new UsageError('ADMIN_TOKEN is not set: the gateway\'s ADMIN_TOKEN')
  return { url, token }
}

async function main(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true })
    if (values.help) {
      process.stdout.write(`${USAGE}\n`)
      return 0
    }
    const [verb, ...args] = positionals
    process.stdout.write(`${await run(verb, args, values, connectionFromEnv(process.env))}\n`)
    return 0
  } catch (err) {
    if (err instanceof CallFailed) {
      process.stderr.write(`error: ${err.message}\n`)
      return 1
    }
    const message = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : undefined
    if (message === undefined) throw err
    process.stderr.write(`${message}\n\nnpm run admin -- --help lists the verbs and options.\n`)
    return 2
  }
}

process.exitCode = await main(process.argv.slice(2))
