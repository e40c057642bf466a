import t from 'tap'
import { isValidChallenge, isValidVerifier, newVerifier, s256, verifierMatches } from '../../gateway/policy/pkce.ts'

t.test('RFC 7636 appendix B example', async (t) => {
  const verifier = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'
  t.equal(s256(verifier), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM')
  t.ok(verifierMatches(verifier, 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'))
  t.notOk(verifierMatches(verifier + 'x', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'))
  t.notOk(verifierMatches(verifier, 'short'))
})

t.test('shapes', async (t) => {
  t.ok(isValidVerifier('a'.repeat(43)))
  t.notOk(isValidVerifier('a'.repeat(42)))
  t.notOk(isValidVerifier('a'.repeat(129)))
  t.notOk(isValidVerifier('a'.repeat(42) + '!'))
  t.ok(isValidChallenge('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'))
  t.notOk(isValidChallenge('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c='))
  t.notOk(isValidChallenge(['E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM']))
})

t.test('the gateway makes valid, distinct verifiers for its own PKCE', async (t) => {
  const a = newVerifier()
  t.ok(isValidVerifier(a), 'RFC 7636 shape')
  t.not(a, newVerifier(), 'fresh each time')
  t.ok(isValidChallenge(s256(a)))
})
