/** Which identity source applies with which upstream, and how claims become the user of a grant. */
import t from 'tap'
import { identityFrom, identitySourceFor } from '../../gateway/policy/identity.ts'

const openid = { id_token_signing_alg_values_supported: ['RS256'], userinfo_endpoint: 'https://idp.example/me' }
const oauthOnly = {}
const withUserinfo = { userinfo_endpoint: 'https://idp.example/me' }
const withIntrospection = { introspection_endpoint: 'https://idp.example/introspect' }

t.test('auto: the ID token when one is sent, else userinfo, else none', async (t) => {
  t.equal(identitySourceFor('auto', openid), 'id_token', 'an OpenID upstream, from its metadata')
  t.equal(identitySourceFor('auto', openid, false), 'userinfo', 'no ID token sent this time: userinfo')
  t.equal(identitySourceFor('auto', oauthOnly, true), 'id_token', 'an ID token sent without discovery')
  t.equal(identitySourceFor('auto', withUserinfo), 'userinfo')
  t.equal(identitySourceFor('auto', withIntrospection), 'none', 'introspection only when asked for')
  t.equal(identitySourceFor('auto', oauthOnly), 'none')
})

t.test('an explicit source, when the upstream has it', async (t) => {
  t.equal(identitySourceFor('introspection', withIntrospection), 'introspection')
  t.equal(identitySourceFor('introspection', openid), 'none')
  t.equal(identitySourceFor('userinfo', oauthOnly), 'none')
  t.equal(identitySourceFor('id_token', openid, false), 'none', 'no ID token sent')
  t.equal(identitySourceFor('none', openid, true), 'none')
})

t.test('claims to the user', async (t) => {
  t.same(identityFrom({ sub: 'u1', name: 'Ada', email: 'ada@example.test' }, 'sub'), { id: 'u1', name: 'Ada', email: 'ada@example.test' })
  t.same(identityFrom({ sub: 'u1', preferred_username: 'ada' }, 'sub'), { id: 'u1', name: 'ada', email: undefined }, 'preferred_username stands in for the name')
  t.same(identityFrom({ sub: 'u1', email: 'ada@example.test' }, 'email'), { id: 'ada@example.test', name: undefined, email: 'ada@example.test' }, 'another claim as the id')
  t.same(identityFrom({ sub: 'u1', uid: 42 }, 'uid'), { id: '42', name: undefined, email: undefined }, 'a number id')
  t.equal(identityFrom({ sub: 'u1' }, 'uid'), undefined, 'no such claim: no user')
  t.equal(identityFrom({ sub: '' }, 'sub'), undefined, 'an empty id: no user')
  t.equal(identityFrom({ sub: { nested: true } }, 'sub'), undefined, 'not a string: no user')
  t.equal(identityFrom(undefined, 'sub'), undefined)
  t.equal(identityFrom({ sub: 'x'.repeat(2000) }, 'sub')?.id.length, 512, 'bounded')
})
