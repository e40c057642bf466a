/**
 * Which addresses and URLs the gateway may fetch on a client's say-so (client
 * metadata documents and their key sets). The draft on Client ID Metadata
 * Documents (§ "Server Side Request Forgery") forbids special-use addresses
 * (RFC 6890) and allows loopback only for development. Pure: no I/O here.
 */
import { BlockList, isIP } from 'node:net'

/** RFC 6890 and the IANA special-purpose registries, plus ranges that tunnel to them (6to4, Teredo, NAT64). */
const SPECIAL_USE: ReadonlyArray<[string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'], // "this network"
  ['10.0.0.0', 8, 'ipv4'], // private
  ['100.64.0.0', 10, 'ipv4'], // carrier-grade NAT
  ['127.0.0.0', 8, 'ipv4'], // loopback
  ['169.254.0.0', 16, 'ipv4'], // link-local, cloud metadata services
  ['172.16.0.0', 12, 'ipv4'], // private
  ['192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['192.0.2.0', 24, 'ipv4'], // documentation
  ['192.31.196.0', 24, 'ipv4'], // AS112
  ['192.52.193.0', 24, 'ipv4'], // AMT
  ['192.88.99.0', 24, 'ipv4'], // 6to4 relay anycast
  ['192.168.0.0', 16, 'ipv4'], // private
  ['192.175.48.0', 24, 'ipv4'], // AS112
  ['198.18.0.0', 15, 'ipv4'], // benchmarking
  ['198.51.100.0', 24, 'ipv4'], // documentation
  ['203.0.113.0', 24, 'ipv4'], // documentation
  ['224.0.0.0', 4, 'ipv4'], // multicast
  ['240.0.0.0', 4, 'ipv4'], // reserved, broadcast
  ['::', 128, 'ipv6'], // unspecified
  ['::1', 128, 'ipv6'], // loopback
  ['64:ff9b::', 96, 'ipv6'], // NAT64
  ['64:ff9b:1::', 48, 'ipv6'], // local NAT64
  ['100::', 64, 'ipv6'], // discard
  ['2001::', 23, 'ipv6'], // IETF protocol assignments, Teredo
  ['2001:db8::', 32, 'ipv6'], // documentation
  ['2002::', 16, 'ipv6'], // 6to4
  ['2620:4f:8000::', 48, 'ipv6'], // AS112
  ['fc00::', 7, 'ipv6'], // unique local
  ['fe80::', 10, 'ipv6'], // link-local
  ['fec0::', 10, 'ipv6'], // site-local (deprecated)
  ['ff00::', 8, 'ipv6'], // multicast
]

const specialUse = new BlockList()
for (const [network, prefix, family] of SPECIAL_USE) specialUse.addSubnet(network, prefix, family)
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are matched against the IPv4 rules by BlockList itself.

const loopback = new BlockList()
loopback.addSubnet('127.0.0.0', 8, 'ipv4')
loopback.addAddress('::1', 'ipv6')

/** The address without IPv6 brackets, as URL.hostname gives it for IPv6 literals. */
function bare(address: string) {
  return address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address
}

function familyOf(address: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(address)
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined
}

export function isLoopbackAddress(address: string): boolean {
  const ip = bare(address)
  const family = familyOf(ip)
  return family !== undefined && loopback.check(ip, family)
}

/**
 * Whether the gateway may connect to this IP address: never a special-use
 * address, except loopback when the development switch allows it.
 */
export function isFetchableAddress(address: string, options: { allowLoopback: boolean }): boolean {
  const ip = bare(address)
  const family = familyOf(ip)
  if (!family) return false
  if (options.allowLoopback && loopback.check(ip, family)) return true
  return !specialUse.check(ip, family)
}

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: string }

/**
 * Whether the gateway may fetch this URL at all, before any DNS: https only
 * (plain http only on a loopback host under the development switch), no
 * userinfo, and an IP literal must itself be fetchable. Host names are vetted
 * again after resolution, on the address actually connected to.
 */
export function checkFetchableUrl(raw: string, options: { allowLoopback: boolean }): UrlCheck {
  if (!URL.canParse(raw)) return { ok: false, reason: 'is not a valid URL' }
  const url = new URL(raw)
  const host = bare(url.hostname)
  const loopbackHost = host === 'localhost' || isLoopbackAddress(host)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && options.allowLoopback && loopbackHost)) {
    return { ok: false, reason: 'must be an https URL' }
  }
  if (url.username || url.password) return { ok: false, reason: 'must not contain a user name or password' }
  if (familyOf(host) && !isFetchableAddress(host, options)) {
    return { ok: false, reason: 'points to a private, loopback, link-local or otherwise special-use address' }
  }
  return { ok: true, url }
}

/** An address range in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`) or a single address; undefined when it is neither. */
export function parseRange(value: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [network = '', prefixText, ...rest] = value.trim().split('/')
  const family = familyOf(network)
  if (!family || rest.length) return undefined
  const bits = family === 'ipv4' ? 32 : 128
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined
  const prefix = prefixText === undefined ? bits : Number(prefixText)
  return prefix <= bits ? { network, prefix, family } : undefined
}

/** A set of address ranges, built once; IPv4-mapped IPv6 addresses match the IPv4 ranges. */
export class AddressRanges {
  readonly #list = new BlockList()
  readonly size: number

  /** Throws on a range that does not parse (the configuration schema refuses those first). */
  constructor(ranges: readonly string[]) {
    for (const value of ranges) {
      const range = parseRange(value)
      if (!range) throw new Error(`not an address range: ${value}`)
      this.#list.addSubnet(range.network, range.prefix, range.family)
    }
    this.size = ranges.length
  }

  has(address: string): boolean {
    const ip = bare(address)
    const family = familyOf(ip)
    return family !== undefined && this.#list.check(ip, family)
  }
}
