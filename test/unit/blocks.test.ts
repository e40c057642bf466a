import t from 'tap'
import { blockMatches, globMatches, matchingBlock, parseBlockRule } from '../../gateway/policy/blocks.ts'

const claude = { client_id: 'client-claude', client_name: 'Claude', redirect_uris: ['https://claude.ai/api/mcp/auth_callback'] }
const cursor = { client_id: 'client-cursor', client_name: 'Cursor', redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback'] }
const local = { client_id: 'client-local', redirect_uris: ['http://127.0.0.1:33418/callback', 'https://Evil.Example:8443/cb'] }

t.test('a client id block matches that id exactly', async (t) => {
  t.ok(blockMatches({ client_id: 'client-claude' }, claude))
  t.notOk(blockMatches({ client_id: 'client-claud' }, claude), 'no prefix match')
  t.notOk(blockMatches({ client_id: 'CLIENT-CLAUDE' }, claude), 'ids are case-sensitive')
  t.notOk(blockMatches({ client_id: 'client-claude' }, { redirect_uris: claude.redirect_uris }), 'a registration without an id yet')
})

t.test('a redirect host block matches the host of any redirect URI', async (t) => {
  t.ok(blockMatches({ redirect_host: 'claude.ai' }, claude))
  t.notOk(blockMatches({ redirect_host: 'ai' }, claude), 'no suffix match')
  t.notOk(blockMatches({ redirect_host: 'evil.claude.ai' }, claude))
  t.ok(blockMatches({ redirect_host: 'anysphere.cursor-mcp' }, cursor), 'a custom scheme host')
  t.ok(blockMatches({ redirect_host: 'evil.example' }, local), 'the second URI, any port, whatever its case')
  t.ok(blockMatches({ redirect_host: 'evil.example:8443' }, local), 'with its port')
  t.notOk(blockMatches({ redirect_host: 'evil.example:9443' }, local), 'another port')
  t.ok(blockMatches({ redirect_host: '127.0.0.1' }, local))
})

t.test('a name pattern is a case-insensitive glob', async (t) => {
  t.ok(blockMatches({ client_name_pattern: 'claude' }, claude), 'no wildcard: the whole name')
  t.ok(blockMatches({ client_name_pattern: 'CL*' }, claude))
  t.ok(blockMatches({ client_name_pattern: 'cl?ude' }, claude))
  t.notOk(blockMatches({ client_name_pattern: 'cl?de' }, claude))
  t.notOk(blockMatches({ client_name_pattern: 'laude' }, claude), 'anchored at both ends')
  t.notOk(blockMatches({ client_name_pattern: 'x*' }, local), 'a client without a name')
  t.ok(globMatches('*free*gpt*', 'Totally FREE ChatGPT Pro'))
  t.ok(globMatches('a*b*c', 'abc'))
  t.ok(globMatches('a*b*c', 'axxbyyc'))
  t.notOk(globMatches('a*b*c', 'axxbyy'))
  t.ok(globMatches('??', '日本'), '? is one character, not one UTF-16 unit')
  t.ok(globMatches('.*', '.anything'), 'regular expression syntax is literal')
  t.notOk(globMatches('.*', 'x'), 'the dot is a dot')
  t.ok(globMatches('[a]', '[A]'), 'brackets are literal')
  t.ok(globMatches('a**b', 'ab'))
})

t.test('a hostile pattern and name still match in bounded time', async (t) => {
  const started = performance.now()
  t.notOk(globMatches(`${'*a'.repeat(100)}b`, 'a'.repeat(200)))
  t.ok(performance.now() - started < 200, 'no catastrophic backtracking')
})

t.test('the first matching block is found', async (t) => {
  const blocks = [{ block_id: 'b1', client_name_pattern: 'x*' }, { block_id: 'b2', redirect_host: 'claude.ai' }, { block_id: 'b3', client_id: 'client-claude' }]
  t.equal(matchingBlock(blocks, claude)?.block_id, 'b2')
  t.equal(matchingBlock(blocks, cursor), undefined)
})

t.test('what ops send is checked and normalised', async (t) => {
  t.same(parseBlockRule({ client_id: 'abc' }), { ok: true, rule: { client_id: 'abc' } })
  t.same(parseBlockRule({ redirect_host: 'Evil.Example' }), { ok: true, rule: { redirect_host: 'evil.example' } })
  t.same(parseBlockRule({ redirect_host: 'evil.example:443' }), { ok: true, rule: { redirect_host: 'evil.example' } }, 'the default port is dropped')
  t.same(parseBlockRule({ redirect_host: 'evil.example:8443' }), { ok: true, rule: { redirect_host: 'evil.example:8443' } })
  t.same(parseBlockRule({ client_name_pattern: '*GPT*' }), { ok: true, rule: { client_name_pattern: '*GPT*' } }, 'kept as written; matching ignores case')
  for (const bad of ['https://evil.example', 'evil.example/cb', 'user@evil.example', 'evil example', '', 'evil.example?x']) {
    const parsed = parseBlockRule({ redirect_host: bad })
    t.equal(parsed.ok, false, `redirect_host ${JSON.stringify(bad)} is refused`)
    if (!parsed.ok) t.match(parsed.reason, /^redirect_host: /)
  }
  t.match(parseBlockRule({}), { ok: false, reason: /exactly one/ })
  t.match(parseBlockRule({ client_id: 'a', redirect_host: 'b' }), { ok: false, reason: /exactly one/ })
  t.match(parseBlockRule({ client_name_pattern: '**' }), { ok: false, reason: /every client/ })
  t.match(parseBlockRule({ client_name_pattern: 'x'.repeat(201) }), { ok: false, reason: /1 to 200/ })
})
