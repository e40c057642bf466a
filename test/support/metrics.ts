/**
 * Reading the gateway's /metrics (Prometheus text format) in tests and the
 * benchmark.
 */

/** One sample: the series named `name` with exactly these labels; 0 when it does not exist yet. */
export function sample(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`)
  for (const line of text.split('\n')) {
    if (wanted.length === 0 && line.startsWith(`${name} `)) return Number(line.slice(name.length + 1))
    if (!line.startsWith(`${name}{`)) continue
    const inside = line.slice(name.length + 1, line.indexOf('}'))
    const have = inside.split(',')
    if (wanted.every((pair) => have.includes(pair)) && have.length === wanted.length) return Number(line.slice(line.indexOf('}') + 2))
  }
  return 0
}
