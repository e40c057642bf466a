/**
 * Renders the configuration reference (docs/configuration.md) and the
 * commented configuration file (config/gateway.yaml) from one source: the
 * JSON Schema of gateway/config/schema.ts (descriptions, defaults, examples)
 * and the environment variable tables of gateway/config/load.ts.
 * scripts/docs.ts writes both files; test/unit/config-docs.test.ts fails when
 * either differs from what these functions return.
 */
import { stringify } from 'yaml'
import { z } from 'zod'
import { DEFAULT_CONFIG_PATH, ENVIRONMENT_ONLY_VARIABLES, OVERRIDE_VARIABLES } from '../gateway/config/load.ts'
import { LIVE_KEYS } from '../gateway/config/reload.ts'
import { configSchema } from '../gateway/config/schema.ts'

/** The part of JSON Schema (draft 2020-12) that zod writes for this schema. */
interface JsonSchema {
  type?: string
  description?: string
  default?: unknown
  examples?: unknown[]
  properties?: Record<string, JsonSchema>
  required?: string[]
  items?: JsonSchema
  additionalProperties?: boolean | JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  enum?: unknown[]
  const?: unknown
  minimum?: number
  maximum?: number
}

/** One key of the file: a section (a mapping of keys) or a setting. */
export interface Key {
  /** Dotted, as in error messages: `upstream.timeoutMs`. */
  path: string
  name: string
  depth: number
  schema: JsonSchema
  /** No default: the file (or the environment) must set it. */
  required: boolean
  /** Not required and no default: a section that is absent unless set. */
  optional: boolean
  /** Required only when its optional section is set. */
  withinOptional: boolean
  children?: Key[]
}

const isEmptyMapping = (value: unknown) => value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0

/** A mapping whose keys are documented one by one, rather than a value written whole (a rate limit rule). */
const isSection = (schema: JsonSchema) => schema.type === 'object' && schema.properties !== undefined && (schema.default === undefined || isEmptyMapping(schema.default))

function keysOf(schema: JsonSchema, prefix: string, depth: number, withinOptional: boolean): Key[] {
  return Object.entries(schema.properties ?? {}).map(([name, child]) => {
    const path = prefix ? `${prefix}.${name}` : name
    const listed = schema.required?.includes(name) ?? false
    const key: Key = {
      path,
      name,
      depth,
      schema: child,
      required: listed && child.default === undefined,
      optional: !listed && child.default === undefined,
      withinOptional: withinOptional && listed,
    }
    if (isSection(child)) key.children = keysOf(child, path, depth + 1, withinOptional || key.optional)
    return key
  })
}

/** Every key of the configuration, in the schema's order, sections with their keys. */
export function configurationKeys(): Key[] {
  const schema = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema
  return keysOf(schema, '', 0, false)
}

/** The keys with their sections' keys, depth first. */
export const allKeys = (keys: Key[]): Key[] => keys.flatMap((key) => [key, ...allKeys(key.children ?? [])])

/** A value as YAML on one line: `[openid, email]`, `{ max: 60, windowSeconds: 60 }`. */
const inline = (value: unknown) => (value === undefined ? '' : stringify(value, { collectionStyle: 'flow', lineWidth: 0 }).trim())

/** The value the shipped file writes: the first example where there is one (required keys, presets), else the default. */
const shippedValue = (key: Key) => key.schema.examples?.[0] ?? key.schema.default

const overridesOf = (key: Key) => OVERRIDE_VARIABLES.filter((variable) => variable.key === key.path).map((variable) => variable.name)

function rangeOf(schema: JsonSchema) {
  const bound = (value: number | undefined) => (value !== undefined && Math.abs(value) < Number.MAX_SAFE_INTEGER ? value : undefined)
  const [min, max] = [bound(schema.minimum), bound(schema.maximum)]
  if (min !== undefined && max !== undefined) return ` ${min}–${max}`
  if (min !== undefined) return ` ≥ ${min}`
  if (max !== undefined) return ` ≤ ${max}`
  return ''
}

/** The key's type in words: `integer 100–120000`, `list of string`, `{ max, windowSeconds? }`. */
export function typeOf(schema: JsonSchema): string {
  const alternatives = schema.anyOf ?? schema.oneOf
  if (alternatives) return alternatives.map(typeOf).join(' or ')
  if (schema.enum) return `one of ${schema.enum.map((value) => `\`${String(value)}\``).join(', ')}`
  if (schema.const !== undefined) return `\`${String(schema.const)}\``
  switch (schema.type) {
    case 'integer':
    case 'number':
      return `${schema.type}${rangeOf(schema)}`
    case 'array':
      return `list of ${schema.items ? typeOf(schema.items) : 'any'}`
    case 'object': {
      if (schema.properties) {
        const fields = Object.entries(schema.properties).map(([name, field]) => {
          if (field.const !== undefined) return `${name}: ${String(field.const)}`
          return schema.required?.includes(name) && field.default === undefined ? name : `${name}?`
        })
        return `{ ${fields.join(', ')} }`
      }
      const values = schema.additionalProperties
      return `map of string to ${typeof values === 'object' ? typeOf(values) : 'any'}`
    }
    default:
      return schema.type ?? 'any'
  }
}

/** Text for a table cell: pipes escaped, and angle brackets outside code spans, which Markdown would read as HTML. */
const cell = (text: string) =>
  text
    .split('`')
    .map((part, index) => (index % 2 ? part : part.replace(/</g, '&lt;').replace(/>/g, '&gt;')))
    .join('`')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ')

function defaultCell(key: Key) {
  if (key.schema.default !== undefined) return `\`${inline(key.schema.default)}\``
  if (key.required) return key.withinOptional ? 'required in this section' : '**required**'
  return 'not set'
}

function descriptionCell(key: Key) {
  const example = key.schema.examples?.[0]
  const shown = example !== undefined && inline(example) !== inline(key.schema.default) ? ` Example: \`${inline(example)}\`.` : ''
  return cell(`${key.schema.description ?? ''}${shown}`)
}

function sectionTable(keys: Key[]) {
  const rows = keys.map((key) => {
    const env = overridesOf(key).map((name) => `\`${name}\``).join(', ')
    return `| \`${key.path}\` | ${cell(typeOf(key.schema))} | ${cell(defaultCell(key))} | ${env} | ${descriptionCell(key)} |`
  })
  return ['| Key | Type | Default | Environment | Description |', '|---|---|---|---|---|', ...rows].join('\n')
}

function sections(keys: Key[], title: string, description: string | undefined): string[] {
  const settings = keys.filter((key) => !key.children)
  const own = settings.length ? [[`### ${title}`, ...(description ? [description] : []), sectionTable(settings)].join('\n\n')] : []
  return [...own, ...keys.filter((key) => key.children).flatMap((key) => sections(key.children!, `\`${key.path}\``, key.schema.description))]
}

const listed = (names: readonly string[]) => names.map((name) => `\`${name}\``).join(', ')

/** docs/configuration.md. */
export function configurationReference(): string {
  const keys = configurationKeys()
  const variables = [
    '| Variable | Description |',
    '|---|---|',
    ...ENVIRONMENT_ONLY_VARIABLES.map((variable) => `| \`${variable.name}\` | ${cell(`${variable.required ? '**Required.** ' : ''}${variable.description}`)} |`),
  ].join('\n')
  const overrides = [
    '| Variable | Sets | Written as |',
    '|---|---|---|',
    ...OVERRIDE_VARIABLES.map((variable) => `| \`${variable.name}\` | [\`${variable.key}\`](#${anchorOf(variable.key)}) | ${cell(variable.format ?? 'the key\'s value')} |`),
  ].join('\n')
  return `${[
    '# Configuration reference',
    '<!-- Generated by `npm run docs` from gateway/config/schema.ts and gateway/config/load.ts: edit those, then regenerate. -->',
    `The gateway reads its configuration once at start-up: the YAML file named by \`GATEWAY_CONFIG\` (default \`${DEFAULT_CONFIG_PATH}\`) and the environment, which overrides a few keys and alone holds the secrets. It validates both against the schema and refuses to start with a message that names each wrong key and why (\`upstream.issuer: must be https …\`). Plain http is accepted only for loopback hosts (and for \`front.mcpUpstream\`, a cluster-internal address); every other URL must be https.`,
    `The gateway watches the file and re-reads it on SIGHUP: ${listed(LIVE_KEYS)} applies within seconds; an invalid file is refused with a log line naming the key, and the previous configuration keeps serving. Every other key needs a restart, and a reload logs which changed keys wait for one.`,
    `[config/gateway.yaml](../config/gateway.yaml) is this reference as a commented file: every key with its description and its default.`,
    '## Environment variables',
    'Set only in the environment:',
    variables,
    'Overriding a key of the file:',
    overrides,
    '## Keys',
    ...sections(keys, 'Top level', undefined),
  ].join('\n\n')}\n`
}

/** The anchor GitHub gives the heading of the section that holds a key. */
function anchorOf(path: string) {
  const section = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : 'Top level'
  return section.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')
}

/** Words wrapped to lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  return line ? [...lines, line] : lines
}

const WIDTH = 80

function comment(text: string, indent: string) {
  return wrap(text, WIDTH - indent.length - 2).map((line) => `${indent}# ${line}`)
}

function yamlOf(key: Key): string[] {
  const indent = '  '.repeat(key.depth)
  const env = overridesOf(key)
  const written = shippedValue(key)
  const notes = [
    key.required && !key.withinOptional ? 'Required.' : '',
    key.schema.description ?? '',
    env.length ? `Env: ${env.join(', ')}.` : '',
    key.schema.default !== undefined && inline(written) !== inline(key.schema.default) ? `Default: ${inline(key.schema.default)}.` : '',
  ]
  const lines = [...(key.depth === 0 ? [''] : []), ...comment(notes.filter(Boolean).join(' '), indent)]
  if (key.optional) {
    // Absent unless set: its example, commented out.
    if (written === undefined) return [...lines, `${indent}# ${key.name}:`]
    const block = key.children ? stringify({ [key.name]: written }, { lineWidth: 0 }) : `${key.name}: ${inline(written)}\n`
    return [...lines, ...block.trimEnd().split('\n').map((line) => `${indent}# ${line}`)]
  }
  if (key.children) return [...lines, `${indent}${key.name}:`, ...key.children.flatMap(yamlOf)]
  return [...lines, `${indent}${key.name}: ${inline(written)}`]
}

/** config/gateway.yaml. */
export function configurationFile(): string {
  const secrets = ENVIRONMENT_ONLY_VARIABLES.filter((variable) => variable.required).map((variable) => variable.name)
  const header = [
    "The gateway's configuration: every key, its description and its default.",
    'Generated by `npm run docs` from gateway/config/schema.ts: edit the schema, then regenerate; docs/configuration.md is the same reference as a page.',
    '',
    'Each value written here is the default, except for the required keys and where a comment names the default. A key left at its default may be deleted.',
    `Environment variables override the keys marked "Env:"; secrets (${secrets.join(', ')}, …) come from the environment only.`,
    'Plain http is accepted only for loopback hosts; every other URL must be https.',
    '',
    `The gateway watches this file and re-reads it on SIGHUP: an edit of ${LIVE_KEYS.join(', ')} applies within seconds; an invalid file is refused with a log line naming the key, and the previous configuration keeps serving. Every other key needs a restart.`,
  ]
  const head = header.flatMap((paragraph) => (paragraph ? comment(paragraph, '') : ['#']))
  return `${[...head, ...configurationKeys().flatMap(yamlOf)].join('\n')}\n`
}

/** The generated files, by their path in the repository. */
export const GENERATED_FILES = {
  'docs/configuration.md': configurationReference,
  'config/gateway.yaml': configurationFile,
} as const
