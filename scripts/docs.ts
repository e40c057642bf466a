/**
 * `npm run docs`: writes docs/configuration.md and config/gateway.yaml from
 * the configuration schema (see scripts/config-reference.ts). Run it after
 * changing a key; test/unit/config-docs.test.ts fails until it has run.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { GENERATED_FILES } from './config-reference.ts'

const root = new URL('..', import.meta.url)

for (const [path, render] of Object.entries(GENERATED_FILES)) {
  const file = new URL(path, root)
  const text = render()
  let before: string | undefined
  try {
    before = readFileSync(file, 'utf8')
  } catch {
    before = undefined
  }
  if (before === text) {
    console.log(`${path}: up to date`)
  } else {
    writeFileSync(file, text)
    console.log(`${path}: written`)
  }
}
