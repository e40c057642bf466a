/**
 * The one place the gateway fetches URLs that clients name: client metadata
 * documents and the key sets they point to. Everything a client controls is
 * hostile until proven otherwise, so every fetch is guarded:
 *
 * - https only, no userinfo (checkFetchableUrl);
 * - the host name is resolved here and every address vetted before the socket
 *   connects, and the socket connects to the vetted address itself, so a DNS
 *   answer that changes between check and use (rebinding) cannot reach a
 *   private, loopback or link-local address;
 * - no redirects, a byte limit, and one timeout for connect, headers and body.
 *
 * It has its own undici Agent, separate from the upstream's.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns'
import { Agent, request } from 'undici'
import { checkFetchableUrl, isFetchableAddress } from '../policy/addresses.ts'

/** A fetch that was refused or failed; the message completes "the document at <url> …". */
export class FetchRefused extends Error {
  override name = 'FetchRefused'
}

export interface FetchedJson {
  json: unknown
  /** Caching headers as received (RFC 9111): the caller decides the lifetime. */
  cacheControl?: string | undefined
  expires?: string | undefined
  date?: string | undefined
}

export interface ClientMetadataFetcher {
  /** Fetches a JSON document of at most `maxBytes`; throws FetchRefused with a reason fit for the user. */
  fetchJson(url: string, maxBytes: number): Promise<FetchedJson>
  close(): Promise<void>
}

export interface FetcherOptions {
  timeoutMs: number
  /** DEVELOPMENT ONLY: loopback addresses (and http on them) are allowed. */
  allowLoopback: boolean
  /** The resolver; tests put a fake one in place of the public DNS. */
  resolve?: (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void
}

const SPECIAL_ADDRESS = 'ERR_GATEWAY_SPECIAL_ADDRESS'

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for net.connect: resolves, refuses the host when ANY of its
 * addresses is special-use (a name that mixes public and private answers is
 * an attack, not a configuration), and hands net only vetted addresses.
 */
function vettedLookup(options: FetcherOptions) {
  const resolve = options.resolve ?? ((hostname, lookupOptions, callback) => dnsLookup(hostname, lookupOptions, callback))
  return (hostname: string, lookupOptions: { family?: number | string; hints?: number; all?: boolean }, callback: LookupCallback) => {
    const family = lookupOptions.family === 'IPv6' ? 6 : lookupOptions.family === 'IPv4' ? 4 : Number(lookupOptions.family ?? 0)
    resolve(hostname, { all: true, family, hints: lookupOptions.hints ?? 0 }, (err, addresses) => {
      if (err) return callback(err, [])
      if (addresses.length === 0 || addresses.some((entry) => !isFetchableAddress(entry.address, options))) {
        const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves to a special-use address`)
        refused.code = SPECIAL_ADDRESS
        return callback(refused, [])
      }
      if (lookupOptions.all) return callback(null, addresses)
      return callback(null, addresses[0]!.address, addresses[0]!.family)
    })
  }
}

function hasCode(err: unknown, code: string): boolean {
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    if ((current as { code?: unknown }).code === code) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

export function createClientMetadataFetcher(options: FetcherOptions): ClientMetadataFetcher {
  const agent = new Agent({
    connect: { timeout: options.timeoutMs, lookup: vettedLookup(options) as never },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    connections: 16,
  })

  async function readLimited(body: AsyncIterable<Buffer>, maxBytes: number): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of body) {
      size += chunk.length
      if (size > maxBytes) throw new FetchRefused(`is larger than ${maxBytes} bytes`)
      chunks.push(chunk)
    }
    return Buffer.concat(chunks)
  }

  return {
    async fetchJson(raw, maxBytes) {
      const checked = checkFetchableUrl(raw, options)
      if (!checked.ok) throw new FetchRefused(checked.reason)
      const signal = AbortSignal.timeout(options.timeoutMs)
      let response: Awaited<ReturnType<typeof request>>
      try {
        response = await request(checked.url, {
          dispatcher: agent,
          method: 'GET',
          headers: { accept: 'application/json', 'user-agent': 'neonpanel-oauth-gateway' },
          signal,
        })
      } catch (err) {
        if (hasCode(err, SPECIAL_ADDRESS)) throw new FetchRefused('points to a private, loopback, link-local or otherwise special-use address', { cause: err })
        if (signal.aborted) throw new FetchRefused(`did not answer within ${options.timeoutMs} ms`, { cause: err })
        throw new FetchRefused('could not be reached', { cause: err })
      }
      try {
        const status = response.statusCode
        // The draft: 200 only, and redirects are never followed.
        if (status >= 300 && status < 400) throw new FetchRefused(`answered with a redirect (HTTP ${status}); redirects are not followed`)
        if (status !== 200) throw new FetchRefused(`answered HTTP ${status} instead of 200`)
        const declared = Number(header(response.headers['content-length']) ?? NaN)
        if (declared > maxBytes) throw new FetchRefused(`is larger than ${maxBytes} bytes`)
        const body = await readLimited(response.body, maxBytes)
        let json: unknown
        try {
          json = JSON.parse(body.toString('utf8'))
        } catch {
          throw new FetchRefused('is not valid JSON')
        }
        return {
          json,
          cacheControl: header(response.headers['cache-control']),
          expires: header(response.headers.expires),
          date: header(response.headers.date),
        }
      } catch (err) {
        if (err instanceof FetchRefused) throw err
        if (signal.aborted) throw new FetchRefused(`did not answer within ${options.timeoutMs} ms`, { cause: err })
        throw new FetchRefused('could not be read', { cause: err })
      } finally {
        // Whatever was not read is dropped with its connection; the abort that follows is expected,
        // and an unhandled stream error would take the process down.
        if (!response.body.destroyed) response.body.on('error', () => undefined).destroy()
      }
    },

    async close() {
      await agent.close()
    },
  }
}
