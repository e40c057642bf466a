import t from 'tap'
import type { Block, BlockKind } from '../../gateway/grants/grant.ts'
import { blockApplies, checkBlockValue, firstBlockApplying, globMatches } from '../../gateway/policy/blocks.ts'

const claude = { clientId: 'client-claude', clientName: 'Claude', redirectUris: ['https://claude.ai/api/mcp/auth_callback'] }
const cursor = { clientId: 'client-cursor', clientName: 'Cursor', redirectUris: ['cursor://anysphere.cursor-mcp/oauth/callback'] }
const local = { clientId: 'client-local', redirectUris: ['http://127.0.0.1:33418/callback', 'https://Evil.Example:8443/cb'] }
const block = (kind: BlockKind, value: string) => ({ kind, value })

t.test('a client id block applies to that id exactly', async (t) => {
  t.ok(blockApplies(block('client_id', 'client-claude'), claude))
  t.notOk(blockApplies(block('client_id', 'client-claud'), claude), 'no prefix match')
  t.notOk(blockApplies(block('client_id', 'CLIENT-CLAUDE'), claude), 'ids are case-sensitive')
  t.notOk(blockApplies(block('client_id', 'client-claude'), { redirectUris: claude.redirectUris }), 'a registration without an id yet')
})

t.test('a redirect host block applies to the host of any redirect URI, any port', async (t) => {
  t.ok(blockApplies(block('redirect_host', 'claude.ai'), claude))
  t.notOk(blockApplies(block('redirect_host', 'ai'), claude), 'no suffix match')
  t.notOk(blockApplies(block('redirect_host', 'evil.claude.ai'), claude))
  t.ok(blockApplies(block('redirect_host', 'anysphere.cursor-mcp'), cursor), 'a custom scheme host')
  t.ok(blockApplies(block('redirect_host', 'evil.example'), local), 'the second URI, whatever its port and case')
  t.ok(blockApplies(block('redirect_host', '127.0.0.1'), local))
  t.ok(blockApplies(block('redirect_host', 'claude.ai'), { redirectHost: 'claude.ai' }), 'a grant carries its redirect host')
})

t.test('a name pattern is a case-insensitive glob on the whole name', async (t) => {
  t.ok(blockApplies(block('client_name_pattern', 'claude'), claude), 'no wildcard: the whole name')
  t.ok(blockApplies(block('client_name_pattern', 'CL*'), claude))
  t.ok(blockApplies(block('client_name_pattern', 'cl?ude'), claude))
  t.notOk(blockApplies(block('client_name_pattern', 'cl?de'), claude))
  t.notOk(blockApplies(block('client_name_pattern', 'laude'), claude), 'anchored at both ends')
  t.notOk(blockApplies(block('client_name_pattern', 'x*'), local), 'a client without a name')
  t.ok(globMatches('*free*gpt*', 'Totally FREE ChatGPT Pro'))
  t.ok(globMatches('a*b*c', 'abc'))
  t.ok(globMatches('a*b*c', 'axxbyyc'))
  t.notOk(globMatches('a*b*c', 'axxbyy'))
  t.ok(globMatches('??', '日本'), '? is one character, not one UTF-16 unit')
  t.ok(globMatches('.*', '.anything'), 'regular expression syntax is literal')
  t.notOk(globMatches('.*', 'x'), 'the dot is a dot')
  t.ok(globMatches('[a]', '[A]'), 'brackets are literal')
  t.ok(globMatches('a**b', 'ab'))
  t.ok(globMatches('x*', 'x\ny'), 'a star crosses line breaks')
})

t.test('a hostile pattern and name still match in bounded time', async (t) => {
  const started = performance.now()
  t.notOk(globMatches(`${'*a'.repeat(100)}b`, 'a'.repeat(200)))
  t.ok(performance.now() - started < 200, 'no catastrophic backtracking')
})

t.test('the first block that applies is found', async (t) => {
  const blocks: Block[] = [
    { blockId: 'b1', kind: 'client_name_pattern', value: 'x*', reason: 'r', createdAt: 0 },
    { blockId: 'b2', kind: 'redirect_host', value: 'claude.ai', reason: 'r', createdAt: 0 },
    { blockId: 'b3', kind: 'client_id', value: 'client-claude', reason: 'r', createdAt: 0 },
  ]
  t.equal(firstBlockApplying(blocks, claude)?.blockId, 'b2')
  t.equal(firstBlockApplying(blocks, cursor), undefined)
})

t.test('what ops send is checked and normalised', async (t) => {
  t.same(checkBlockValue('client_id', 'abc'), { ok: true, value: 'abc' })
  t.same(checkBlockValue('redirect_host', 'Evil.Example'), { ok: true, value: 'evil.example' })
  t.same(checkBlockValue('redirect_host', '[::1]'), { ok: true, value: '[::1]' })
  t.same(checkBlockValue('client_name_pattern', '*GPT*'), { ok: true, value: '*GPT*' }, 'kept as written; matching ignores case')
  for (const bad of ['https://evil.example', 'evil.example/cb', 'user@evil.example', 'evil example', '', '  ', 'evil.example?x', 'evil.example:8443', 'evil.example:443', 'evil.example:']) {
    const checked = checkBlockValue('redirect_host', bad)
    t.equal(checked.ok, false, `redirect_host ${JSON.stringify(bad)} is refused`)
    if (!checked.ok) t.match(checked.reason, /^redirect_host: /)
  }
  t.match(checkBlockValue('client_name_pattern', '**'), { ok: false, reason: /every client/ })
  t.match(checkBlockValue('client_name_pattern', 'x'.repeat(201)), { ok: false, reason: /1 to 200/ })
  t.match(checkBlockValue('client_id', ''), { ok: false, reason: /^client_id: / })
})
