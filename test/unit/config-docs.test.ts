/**
 * The schema is the one source of the configuration's documentation:
 * docs/configuration.md and config/gateway.yaml are what `npm run docs`
 * writes from it, every key is described, and every environment variable the
 * gateway reads is in load.ts's tables.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse } from 'yaml'
import { ENVIRONMENT_ONLY_VARIABLES, OVERRIDE_VARIABLES, parseConfig, parseSettings } from '../../gateway/config/load.ts'
import { allKeys, configurationKeys, GENERATED_FILES } from '../../scripts/config-reference.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')
const keys = allKeys(configurationKeys())

for (const [path, render] of Object.entries(GENERATED_FILES)) {
  t.test(`${path} is what npm run docs writes`, async (t) => {
    // On failure: run `npm run docs` and commit the result.
    t.equal(read(path), render(), `${path} matches the schema`)
  })
}

t.test('every key of the schema is described', async (t) => {
  t.ok(keys.length > 60, 'the keys are found')
  const undescribed = keys.filter((key) => !key.schema.description).map((key) => key.path)
  t.same(undescribed, [], 'keys without .describe()')
})

t.test('every key the file must set has an example to write', async (t) => {
  const missing = keys.filter((key) => key.required && !key.withinOptional && !key.children && key.schema.examples === undefined).map((key) => key.path)
  t.same(missing, [], 'required keys without .meta({ examples })')
})

t.test('the shipped file holds the defaults, except where a key names an example', async (t) => {
  const examples: Record<string, any> = {}
  for (const key of keys) {
    if (key.children || key.optional || key.withinOptional || key.schema.examples === undefined) continue
    const parts = key.path.split('.')
    const last = parts.pop()!
    let node = examples
    for (const part of parts) node = node[part] ??= {}
    node[last] = key.schema.examples[0]
  }
  t.same(parseSettings(parse(read('config/gateway.yaml'))), parseSettings(examples), 'the shipped file parses to the examples plus the defaults')
})

t.test("the README's minimal production configuration is valid, and needs only the secrets it names", async (t) => {
  const readme = read('README.md')
  const yaml = /^```yaml\n([\s\S]*?)^```/m.exec(readme)
  t.ok(yaml, 'the README has a yaml block')
  const file = parse(yaml?.[1] ?? '')
  // The secrets: the first sh block after the file.
  const secrets = /^```sh\n([\s\S]*?)^```/m.exec(readme.slice(yaml?.index ?? 0))?.[1] ?? ''
  const env = Object.fromEntries([...secrets.matchAll(/^([A-Z_]+)=/gm)].map((match) => [match[1]!, match[1] === 'REDIS_URL' ? 'rediss://redis.internal:6379' : 'x'.repeat(32)]))
  t.ok('GATEWAY_SECRET' in env && 'UPSTREAM_CLIENT_SECRET' in env, 'the secrets follow it')
  const config = parseConfig(file, env)
  t.equal(config.publicUrl, 'https://oauth.neonpanel.com')
  t.equal(config.server.trustProxy, 1)
})

t.test('the environment variable tables cover what the gateway reads', async (t) => {
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) return sources(path)
      return entry.name.endsWith('.ts') ? [path] : []
    })
  const read = new Set(sources(join(ROOT, 'gateway')).flatMap((file) => [...readFileSync(file, 'utf8').matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)].map((match) => match[1]!)))
  t.ok(read.has('GATEWAY_SECRET') && read.has('GATEWAY_CONFIG'), 'the environment reads are found')
  const documented = new Set([...OVERRIDE_VARIABLES, ...ENVIRONMENT_ONLY_VARIABLES].map((variable) => variable.name))
  // The overrides are read from their table, so they never appear as env.NAME.
  t.same([...read].filter((name) => !documented.has(name)), [], 'variables read but not in load.ts tables')
  const paths = new Set(keys.map((key) => key.path))
  t.same(OVERRIDE_VARIABLES.filter((variable) => !paths.has(variable.key)).map((variable) => variable.name), [], 'overrides name keys of the schema')
})
