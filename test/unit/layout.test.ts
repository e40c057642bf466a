/**
 * The tree is the architecture, so two of its rules are checked here: no
 * module imports itself back through others (type imports included, since a
 * circle of types is a circle of concepts), and the pure policy in
 * gateway/policy/ never reaches Fastify.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const GATEWAY = join(ROOT, 'gateway')

interface Import {
  specifier: string
  typeOnly: boolean
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.name.endsWith('.ts') ? [path] : []
  })
}

/** Static imports and re-exports; `import type` and `export type` are marked. */
export function importsOf(text: string): Import[] {
  const found: Import[] = []
  for (const match of text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
    found.push({ specifier: match[2]!, typeOnly: match[1] !== undefined })
  }
  return found
}

const files = sources(GATEWAY)
const graph = new Map<string, Import[]>(files.map((file) => [file, importsOf(readFileSync(file, 'utf8'))]))
const local = (from: string, specifier: string) => resolve(dirname(from), specifier)
const name = (file: string) => relative(ROOT, file)

t.test('the parser sees value, type and side-effect imports', async (t) => {
  const imports = importsOf("import a from 'a'\nimport type { B } from './b.ts'\nimport { c, type D } from '../c.ts'\nimport './d.ts'\nexport { e } from './e.ts'\nexport type { F } from './f.ts'\n")
  t.same(imports, [
    { specifier: 'a', typeOnly: false },
    { specifier: './b.ts', typeOnly: true },
    { specifier: '../c.ts', typeOnly: false },
    { specifier: './d.ts', typeOnly: false },
    { specifier: './e.ts', typeOnly: false },
    { specifier: './f.ts', typeOnly: true },
  ])
})

t.test('no import circle in gateway/', async (t) => {
  t.ok(files.length > 30, 'the gateway sources are found')
  const circles: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'visiting') {
      circles.push([...path.slice(path.indexOf(file)), file].map(name).join(' -> '))
      return
    }
    state.set(file, 'visiting')
    for (const { specifier } of graph.get(file) ?? []) {
      if (specifier.startsWith('.')) visit(local(file, specifier), [...path, file])
    }
    state.set(file, 'done')
  }
  for (const file of files) visit(file, [])
  t.same(circles, [], 'every module reaches others without coming back to itself')
})

t.test('gateway/policy/ is pure: it never imports Fastify, directly or through what it imports', async (t) => {
  const policy = files.filter((file) => file.startsWith(join(GATEWAY, 'policy') + '/'))
  t.ok(policy.length >= 8, 'the policy modules are found')
  for (const start of policy) {
    const reached: string[] = []
    const seen = new Set<string>()
    const walk = (file: string, direct: boolean) => {
      if (seen.has(file)) return
      seen.add(file)
      for (const { specifier, typeOnly } of graph.get(file) ?? []) {
        // A type import of another module is erased at run time; a type import of Fastify itself still ties policy to it.
        if (/^(?:fastify|@fastify\/)/.test(specifier) && (direct || !typeOnly)) reached.push(`${name(file)} imports ${specifier}`)
        else if (specifier.startsWith('.') && !typeOnly) walk(local(file, specifier), false)
      }
    }
    walk(start, true)
    t.same(reached, [], name(start))
  }
})
