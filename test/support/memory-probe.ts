/**
 * Loaded with `--expose-gc --import` into a gateway process by the fuzz
 * harness: on SIGUSR2 it runs a full garbage collection and writes the live
 * heap to stderr as one JSON line, so a test can tell live memory from heap
 * that V8 merely keeps reserved.
 */
import { getHeapSpaceStatistics } from 'node:v8'

process.on('SIGUSR2', () => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage()
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, { size: space.space_size, used: space.space_used_size }]))
  process.stderr.write(`${JSON.stringify({ memoryProbe: { rss, heapUsed, heapTotal, external, arrayBuffers, spaces } })}\n`)
})
