/**
 * Reading OAuth parameters. RFC 6749 §3.1 and §3.2: parameters must not be
 * repeated, and parameters sent without a value are treated as omitted.
 */
import { invalidRequest } from '../errors.ts'

export type Parameters = Record<string, unknown>

const MAX_PARAMETER_LENGTH = 4096

/** The request's parameters as a plain object, whatever arrived (nothing, JSON, a form). */
export function parametersOf(source: unknown): Parameters {
  return source && typeof source === 'object' && !Array.isArray(source) ? (source as Parameters) : {}
}

/** One parameter, once, or undefined when it is absent or empty. */
export function optional(parameters: Parameters, name: string, maxLength = MAX_PARAMETER_LENGTH): string | undefined {
  if (!Object.hasOwn(parameters, name)) return undefined
  const value = parameters[name]
  if (typeof value !== 'string') throw invalidRequest(`${name} must be given once, as a single value (RFC 6749 §3.1)`)
  if (value.length > maxLength) throw invalidRequest(`${name} is longer than ${maxLength} characters`)
  return value === '' ? undefined : value
}

export function required(parameters: Parameters, name: string, maxLength?: number): string {
  const value = optional(parameters, name, maxLength)
  if (value === undefined) throw invalidRequest(`${name} is required (RFC 6749 §4.1)`)
  return value
}

/** How many parameters a parsed query, form or JSON object carries; a repeated parameter counts each time. */
export function countParameters(source: unknown): number {
  if (!source || typeof source !== 'object') return 0
  if (Array.isArray(source)) return source.length
  let count = 0
  for (const value of Object.values(source)) count += Array.isArray(value) ? value.length : 1
  return count
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false on routes that read no parameters (fixed documents, probes): the limit below is not checked there. */
    parameters?: false
  }
}

/**
 * A hook that refuses requests with more than `max` parameters in their
 * query and body together, before any endpoint looks at them (app.ts gives
 * it to each route that reads parameters).
 */
export function parameterLimit(max: number) {
  return function limitParameters(request: { query: unknown; body: unknown }, _reply: unknown, done: (err?: Error) => void) {
    done(countParameters(request.query) + countParameters(request.body) > max ? invalidRequest(`the request carries more than ${max} parameters`) : undefined)
  }
}
