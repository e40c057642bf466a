/**
 * The gateway's production logger (LOGGER_OPTIONS) writing into an array, so
 * a test reads the lines exactly as they would leave the process.
 */
import { Writable } from 'node:stream'
import { LOGGER_OPTIONS } from '../../gateway/http/log.ts'

export function capturedLog() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  /** The lines so far, parsed. */
  const parsed = <T = Record<string, any>>() => lines.map((line) => JSON.parse(line) as T)
  return { logger: { ...LOGGER_OPTIONS, stream }, lines, parsed }
}
