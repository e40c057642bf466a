/**
 * Loaded with `--expose-gc --import` into a gateway process by the fuzz
 * harness: on SIGUSR2 it runs a full garbage collection and writes the live
 * heap to stderr as one JSON line, so a test can tell live memory from heap
 * that V8 merely keeps reserved.
 */
process.on('SIGUSR2', () => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage()
  process.stderr.write(`${JSON.stringify({ memoryProbe: { rss, heapUsed, heapTotal, external, arrayBuffers } })}\n`)
})
