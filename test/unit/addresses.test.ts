import t from 'tap'
import { AddressRanges, checkFetchableUrl, isFetchableAddress, isLoopbackAddress, parseRange } from '../../gateway/policy/addresses.ts'

const strict = { allowLoopback: false }
const development = { allowLoopback: true }

t.test('special-use addresses are never fetched (RFC 6890)', async (t) => {
  const special = [
    '0.0.0.0', '10.0.0.1', '10.255.255.255', '100.64.0.1', '127.0.0.1', '127.1.2.3', '169.254.169.254', '172.16.0.1', '172.31.255.255',
    '192.0.0.8', '192.0.2.1', '192.88.99.1', '192.168.1.1', '198.18.0.1', '198.51.100.7', '203.0.113.9', '224.0.0.1', '239.255.255.250', '240.0.0.1', '255.255.255.255',
    '::', '::1', '[::1]', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:a9fe:a9fe', '64:ff9b::a00:1', '100::1', '2001::1', '2001:db8::1', '2002:a00:1::1',
    'fc00::1', 'fd12:3456::1', 'fe80::1', 'fec0::1', 'ff02::1',
    'not-an-ip', '', '1.2.3', '999.1.1.1',
  ]
  for (const address of special) t.notOk(isFetchableAddress(address, strict), `${address || '(empty)'} refused`)
})

t.test('public addresses are fetched', async (t) => {
  for (const address of ['8.8.8.8', '1.1.1.1', '93.184.215.14', '172.32.0.1', '192.169.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', '::ffff:8.8.8.8']) {
    t.ok(isFetchableAddress(address, strict), `${address} allowed`)
  }
})

t.test('the development switch opens loopback and nothing else', async (t) => {
  for (const address of ['127.0.0.1', '127.0.0.53', '::1', '[::1]', '::ffff:127.0.0.1']) {
    t.ok(isFetchableAddress(address, development), `${address} allowed in development`)
    t.ok(isLoopbackAddress(address), `${address} is loopback`)
  }
  for (const address of ['10.0.0.1', '169.254.169.254', '192.168.0.1', 'fe80::1', '0.0.0.0']) {
    t.notOk(isFetchableAddress(address, development), `${address} still refused in development`)
  }
})

t.test('URLs: https only, no userinfo, no special-use IP literal', async (t) => {
  t.ok(checkFetchableUrl('https://client.example/meta.json', strict).ok)
  t.ok(checkFetchableUrl('https://8.8.8.8/meta.json', strict).ok)
  const refused: Array<[string, RegExp]> = [
    ['http://client.example/meta.json', /https/],
    ['ftp://client.example/meta.json', /https/],
    ['file:///etc/passwd', /https/],
    ['https://user:pass@client.example/meta.json', /user name or password/],
    ['https://127.0.0.1/meta.json', /special-use/],
    ['https://[::1]/meta.json', /special-use/],
    ['https://[::ffff:127.0.0.1]/meta.json', /special-use/],
    ['https://0x7f.1/meta.json', /special-use/],
    ['https://2130706433/meta.json', /special-use/],
    ['https://169.254.169.254/latest/meta-data', /special-use/],
    ['not a url', /not a valid URL/],
  ]
  for (const [url, reason] of refused) {
    const checked = checkFetchableUrl(url, strict)
    t.notOk(checked.ok, `${url} refused`)
    if (!checked.ok) t.match(checked.reason, reason)
  }
})

t.test('URLs in development: http and https on loopback hosts only', async (t) => {
  t.ok(checkFetchableUrl('http://127.0.0.1:8080/meta.json', development).ok)
  t.ok(checkFetchableUrl('http://localhost:8080/meta.json', development).ok)
  t.ok(checkFetchableUrl('http://[::1]:8080/meta.json', development).ok)
  t.notOk(checkFetchableUrl('http://client.example/meta.json', development).ok, 'plain http elsewhere is still refused')
  t.notOk(checkFetchableUrl('https://10.0.0.1/meta.json', development).ok, 'private addresses are still refused')
})

t.test('address ranges: CIDR, IPv4 and IPv6, mapped addresses', async (t) => {
  t.same(parseRange('203.0.113.0/24'), { network: '203.0.113.0', prefix: 24, family: 'ipv4' })
  t.same(parseRange('2001:db8::/32'), { network: '2001:db8::', prefix: 32, family: 'ipv6' })
  t.same(parseRange('198.51.100.7'), { network: '198.51.100.7', prefix: 32, family: 'ipv4' }, 'one address')
  for (const bad of ['203.0.113.0/33', '2001:db8::/129', 'host/24', '1.2.3.4/', '1.2.3.4/x', '1.2.3.4/8/8']) t.equal(parseRange(bad), undefined, bad)
  const ranges = new AddressRanges(['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'])
  for (const inside of ['203.0.113.1', '203.0.113.255', '::ffff:203.0.113.9', '2001:db8::1', '2001:db8:ffff::1', '198.51.100.7']) t.ok(ranges.has(inside), inside)
  for (const outside of ['203.0.114.1', '198.51.100.8', '2001:db9::1', '10.0.0.1', 'not an address']) t.notOk(ranges.has(outside), outside)
  t.throws(() => new AddressRanges(['nope']), /not an address range: nope/)
})
