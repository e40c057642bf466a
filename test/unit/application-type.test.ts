import t from 'tap'
import { isDeviceRedirect, settleApplicationType } from '../../gateway/policy/application-type.ts'

t.test('which redirect URIs only an app on the device receives', async (t) => {
  for (const uri of ['http://127.0.0.1:8080/callback', 'http://localhost/cb', 'http://[::1]:9/cb', 'cursor://anysphere.cursor-mcp/oauth/callback', 'com.example.app:/oauth']) t.ok(isDeviceRedirect(uri), uri)
  for (const uri of ['https://claude.ai/api/mcp/auth_callback', 'https://127.0.0.1/cb', 'http://example.com/cb', 'not a uri']) t.notOk(isDeviceRedirect(uri), uri)
})

t.test('the label, corrected or inferred from the redirect URIs', async (t) => {
  const device = ['cursor://anysphere.cursor-mcp/oauth/callback', 'http://127.0.0.1/cb']
  const web = ['https://claude.ai/api/mcp/auth_callback']
  t.same(settleApplicationType(undefined, device), { type: 'native' })
  t.same(settleApplicationType(undefined, web), { type: 'web' })
  t.same(settleApplicationType(undefined, [...web, ...device]), { type: 'web' }, 'mixed: web')
  t.same(settleApplicationType('web', device), { type: 'native', corrected: 'web' })
  t.same(settleApplicationType('web', web), { type: 'web' })
  t.same(settleApplicationType('native', web), { type: 'native' }, 'an app may claim an https address')
  t.same(settleApplicationType('native', device), { type: 'native' })
  t.same(settleApplicationType(undefined, []), { type: 'web' }, 'no redirect URI reads as web')
})
