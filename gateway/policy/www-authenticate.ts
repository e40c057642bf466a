/**
 * `WWW-Authenticate` (RFC 9110 §11.6.1) read and written back: a field value
 * is a list of challenges, each a scheme with a token68 or with auth-params
 * whose values are tokens or quoted strings (commas and escapes inside them
 * included). Parameters keep their value as the server wrote it, so what the
 * gateway does not change reaches the client byte for byte. Pure: no Fastify here.
 */

export interface Challenge {
  scheme: string
  token68?: string | undefined
  parameters: Parameter[]
}

export interface Parameter {
  name: string
  /** The value, unquoted and unescaped. */
  value: string
  /** The value as written: a token, or the quoted string with its quotes and escapes. */
  raw: string
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))/

/** The challenges of a field value, several fields joined by commas (RFC 9110 §5.3); undefined when it does not parse. */
export function parseChallenges(value: string): Challenge[] | undefined {
  const challenges: Challenge[] = []
  let rest = value
  const skip = (pattern: RegExp) => (rest = rest.replace(pattern, ''))
  skip(/^[ \t,]+/)
  while (rest) {
    const scheme = TOKEN.exec(rest)?.[0]
    if (!scheme) return undefined
    rest = rest.slice(scheme.length)
    const challenge: Challenge = { scheme, parameters: [] }
    challenges.push(challenge)
    if (rest && !/^[ \t,]/.test(rest)) return undefined
    skip(/^[ \t]+/)
    const token68 = TOKEN68.exec(rest)?.[0]
    if (token68) {
      challenge.token68 = token68
      rest = rest.slice(token68.length)
    } else {
      while (rest && !rest.startsWith(',')) {
        const name = TOKEN.exec(rest)?.[0]
        if (!name) return undefined
        rest = rest.slice(name.length)
        skip(/^[ \t]*/)
        if (!rest.startsWith('=')) return undefined
        rest = rest.slice(1)
        skip(/^[ \t]*/)
        const parsed = readValue(rest)
        if (!parsed) return undefined
        challenge.parameters.push({ name, value: parsed.value, raw: parsed.raw })
        rest = rest.slice(parsed.raw.length)
        skip(/^[ \t]*/)
        if (!rest) break
        if (!rest.startsWith(',')) return undefined
        skip(/^[ \t,]+/)
        // After a comma: another parameter (`name =`) or the next challenge's scheme.
        const next = TOKEN.exec(rest)?.[0]
        if (next && !/^[ \t]*=/.test(rest.slice(next.length))) break
      }
    }
    skip(/^[ \t,]+/)
  }
  return challenges
}

function readValue(text: string): { value: string; raw: string } | undefined {
  if (!text.startsWith('"')) {
    const token = TOKEN.exec(text)?.[0]
    return token ? { value: token, raw: token } : undefined
  }
  let value = ''
  for (let i = 1; i < text.length; i++) {
    const ch = text[i]!
    if (ch === '"') return { value, raw: text.slice(0, i + 1) }
    if (ch === '\\') {
      i++
      if (i >= text.length) return undefined
      value += text[i]
    } else value += ch
  }
  return undefined
}

/** RFC 9110 §5.6.4. */
export function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`
}

export function serializeChallenges(challenges: readonly Challenge[]): string {
  return challenges
    .map((challenge) => {
      if (challenge.token68 !== undefined) return `${challenge.scheme} ${challenge.token68}`
      if (!challenge.parameters.length) return challenge.scheme
      return `${challenge.scheme} ${challenge.parameters.map((parameter) => `${parameter.name}=${parameter.raw}`).join(', ')}`
    })
    .join(', ')
}
