/** The README's first command: `npm run demo` starts everything and the scripted flow works. */
import t from 'tap'
import { spawn } from 'node:child_process'
import { freePort } from './support/ports.ts'

t.test('the demo runs one full connector flow', async (t) => {
  const env = { ...process.env, PORT: String(await freePort()), DEMO_UPSTREAM_PORT: String(await freePort()), DEMO_MCP_PORT: String(await freePort()) }
  const child = spawn(process.execPath, ['test/demo.ts', '--check'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.equal(code, 0, 'exits 0')
  t.match(output, /test account\s+demo@neonpanel\.test \/ neonpanel-demo/, 'prints the account')
  t.match(output, /called the whoami tool: "signed in as np-user-1001"/, 'the tool call worked')
  t.match(output, /the whole flow works/)
})
