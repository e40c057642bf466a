/**
 * The README is the front door to docs/: every page there is linked from it,
 * and every relative link and anchor in README.md and docs/*.md leads
 * somewhere. Anchors are the ones GitHub gives headings.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const README = join(ROOT, 'README.md')
const DOCS = join(ROOT, 'docs')
const pages = readdirSync(DOCS)
  .filter((name) => name.endsWith('.md'))
  .map((name) => join(DOCS, name))

/** The text without fenced code blocks and code spans, where brackets are not links. */
function prose(markdown: string) {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  const withoutCode = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const match of withoutCode.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = match[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\p{Pc}\- ]/gu, '')
      .replace(/ /g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    anchors.add(count ? `${base}-${count}` : base)
  }
  for (const match of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(match[1]!)
  return anchors
}

/** Link targets: inline links and images, and reference definitions. */
function linksOf(markdown: string): string[] {
  const text = prose(markdown)
  const inline = [...text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1]!)
  const references = [...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((match) => match[1]!)
  return [...inline, ...references]
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target)

/** Why a relative link from `file` leads nowhere, or undefined when it resolves. */
function brokenLink(file: string, target: string): string | undefined {
  const [path = '', anchor] = target.split('#', 2) as [string, string | undefined]
  const destination = path ? resolve(dirname(file), decodeURIComponent(path)) : file
  if (!existsSync(destination)) return `${relative(ROOT, destination)} does not exist`
  if (anchor === undefined || !destination.endsWith('.md')) return undefined
  if (!anchorsOf(readFileSync(destination, 'utf8')).has(decodeURIComponent(anchor))) return `${relative(ROOT, destination)} has no heading #${anchor}`
  return undefined
}

t.test('the link and anchor readers', async (t) => {
  t.same(
    [...anchorsOf('# Title\n## The `redis` store: one node\n## Rotating `GATEWAY_SECRET`\n## Title\n```\n# not a heading\n```\n')],
    ['title', 'the-redis-store-one-node', 'rotating-gateway_secret', 'title-1'],
  )
  t.same(linksOf('See [a](docs/a.md#x), ![b](b.png "t") and [c](https://c.example).\n`[d](d.md)`\n```\n[e](e.md)\n```\n[f]: f.md\n'), ['docs/a.md#x', 'b.png', 'https://c.example', 'f.md'])
  t.equal(brokenLink(README, 'docs/nowhere.md'), 'docs/nowhere.md does not exist')
  t.match(brokenLink(README, '#no-such-heading'), /README\.md has no heading #no-such-heading/)
})

t.test('docs/ has pages, and every one is linked from the README', async (t) => {
  t.ok(pages.length >= 8, 'the pages are found')
  const linked = new Set(
    linksOf(readFileSync(README, 'utf8'))
      .filter((target) => !isExternal(target))
      .map((target) => resolve(ROOT, target.split('#')[0]!)),
  )
  t.same(
    pages.filter((page) => !linked.has(page)).map((page) => relative(ROOT, page)),
    [],
    'pages the README does not link',
  )
})

t.test('every relative link and anchor resolves', async (t) => {
  for (const file of [README, ...pages]) {
    const links = linksOf(readFileSync(file, 'utf8')).filter((target) => !isExternal(target))
    const broken = links.map((target) => [target, brokenLink(file, target)]).filter(([, reason]) => reason !== undefined)
    t.same(broken, [], `${relative(ROOT, file)}: ${links.length} relative links`)
  }
})

t.test('the README stays a page', async (t) => {
  const lines = readFileSync(README, 'utf8').split('\n').length
  t.ok(lines <= 250, `README.md has ${lines} lines, at most 250`)
})
