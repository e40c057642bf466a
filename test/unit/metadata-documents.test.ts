import t from 'tap'
import { cacheLifetime, checkClientIdUrl, ClientMetadataDocuments, ClientMetadataError, isClientIdUrl, parseDocument } from '../../gateway/clients/metadata-documents.ts'
import type { Config } from '../../gateway/config/schema.ts'
import { MemoryStore } from '../../gateway/state/store.ts'
import { FetchRefused, type ClientMetadataFetcher, type FetchedJson } from '../../gateway/upstream/document-fetcher.ts'

const URL_ID = 'https://client.example/oauth/client.json'
const document = (overrides: Record<string, unknown> = {}) => ({
  client_id: URL_ID,
  client_name: 'Example',
  redirect_uris: ['https://client.example/callback'],
  ...overrides,
})
const PUBLIC_KEY = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }

t.test('which client ids are document URLs', async (t) => {
  t.ok(isClientIdUrl(URL_ID))
  t.ok(isClientIdUrl('http://127.0.0.1/x'), 'an http URL is one too (and then refused unless in development)')
  t.notOk(isClientIdUrl('AbC123.iv.data'), 'a sealed id is not')
  t.notOk(isClientIdUrl('urn:example:client'))
})

t.test('a client id URL must be https, canonical, with a path and no fragment', async (t) => {
  t.equal(checkClientIdUrl(URL_ID, false).href, URL_ID)
  t.equal(checkClientIdUrl('https://client.example/c?version=1', false).search, '?version=1', 'a query is allowed')
  const refused: Array<[string, RegExp]> = [
    ['http://client.example/client.json', /https/],
    ['https://client.example/', /must have a path/],
    ['https://client.example', /must have a path/],
    ['https://client.example/a/../client.json', /canonical/],
    ['https://client.example/./client.json', /canonical/],
    ['https://Client.Example/client.json', /canonical/],
    ['https://client.example:443/client.json', /canonical/],
    ['https://client.example/client.json#x', /fragment/],
    ['https://user@client.example/client.json', /user name/],
    ['https://10.0.0.8/client.json', /special-use/],
    [`https://client.example/${'a'.repeat(2100)}`, /longer than/],
  ]
  for (const [url, reason] of refused) t.throws(() => checkClientIdUrl(url, false), reason, url.slice(0, 60))
})

t.test('a valid document becomes a client', async (t) => {
  const client = parseDocument(URL_ID, document(), false)
  t.same(client, {
    client_id: URL_ID,
    redirect_uris: ['https://client.example/callback'],
    token_endpoint_auth_method: 'none',
    accepted_auth_methods: ['none'],
    grant_types: ['authorization_code', 'refresh_token'],
    client_name: 'Example',
    application_type: 'web',
    scope: undefined,
    client_id_issued_at: 0,
    metadata_document: true,
    jwks: undefined,
    jwks_uri: undefined,
  })
  const withKeys = parseDocument(URL_ID, document({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [PUBLIC_KEY] } }), false)
  t.equal(withKeys.token_endpoint_auth_method, 'private_key_jwt')
  t.same(withKeys.jwks, { keys: [PUBLIC_KEY] })
  const byUri = parseDocument(URL_ID, document({ token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'https://client.example/jwks.json' }), false)
  t.equal(byUri.jwks_uri, 'https://client.example/jwks.json')
  t.same(parseDocument(URL_ID, document({ grant_types: ['authorization_code'] }), false).grant_types, ['authorization_code'])
  t.equal(parseDocument(URL_ID, document({ redirect_uris: ['http://127.0.0.1:9/cb'] }), false).application_type, 'native', 'a loopback-only document is a native app')
  t.equal(parseDocument(URL_ID, document({ application_type: 'web', redirect_uris: ['http://127.0.0.1:9/cb'] }), false).application_type, 'native', 'corrected like a registration')
})

t.test('SEP-3149: the auth methods a document offers, intersected with the gateway\'s', async (t) => {
  const keys = { jwks: { keys: [PUBLIC_KEY] } }
  const method = (overrides: Record<string, unknown>) => parseDocument(URL_ID, document(overrides), false).token_endpoint_auth_method
  t.equal(method({}), 'none', 'neither field: none')
  t.equal(method({ token_endpoint_auth_method: 'none' }), 'none', 'the single field alone')
  t.equal(method({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], ...keys }), 'private_key_jwt', 'both with keys: private_key_jwt (ChatGPT\'s document)')
  t.equal(method({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], jwks_uri: 'https://client.example/jwks.json' }), 'private_key_jwt', 'keys by jwks_uri')
  t.equal(method({ token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'] }), 'none', 'both without keys: none')
  t.equal(method({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], token_endpoint_auth_method: 'none', ...keys }), 'private_key_jwt', 'the list is authoritative over the single preference')
  t.equal(method({ token_endpoint_auth_methods_supported: ['private_key_jwt', 'none'], token_endpoint_auth_method: 'private_key_jwt', ...keys }), 'private_key_jwt', 'beside the single field')
  t.equal(method({ token_endpoint_auth_methods: ['none'] }), 'none', 'the list under the name token_endpoint_auth_methods')
  t.equal(method({ token_endpoint_auth_methods: ['private_key_jwt'], ...keys }), 'private_key_jwt')
  t.equal(method({ token_endpoint_auth_methods_supported: ['tls_client_auth', 'none'] }), 'none', 'methods the gateway lacks are left out of the intersection')
  t.equal(method({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], token_endpoint_auth_methods: ['private_key_jwt', 'none'], ...keys }), 'private_key_jwt', 'both names with the same list')

  // The client picks from the intersection (SEP-3149): each is accepted; the gateway records the authenticated one first.
  const methods = (overrides: Record<string, unknown>) => {
    const client = parseDocument(URL_ID, document(overrides), false)
    return [client.token_endpoint_auth_method, client.accepted_auth_methods]
  }
  t.same(methods({}), ['none', ['none']])
  t.same(methods({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'], ...keys }), ['private_key_jwt', ['none', 'private_key_jwt']], 'both in common: either')
  t.same(methods({ token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'] }), ['none', ['none']], 'private_key_jwt needs keys')
  t.same(methods({ token_endpoint_auth_methods: ['private_key_jwt'], ...keys }), ['private_key_jwt', ['private_key_jwt']], 'private_key_jwt alone: none is not among them')
  t.same(methods({ token_endpoint_auth_method: 'private_key_jwt', ...keys }), ['private_key_jwt', ['private_key_jwt']], 'the single field alone')

  const refused: Array<[string, Record<string, unknown>, string]> = [
    ['nothing in common', { token_endpoint_auth_methods_supported: ['client_secret_basic', 'tls_client_auth'] }, 'offers token_endpoint_auth_methods_supported client_secret_basic, tls_client_auth, none of which this gateway accepts from a metadata document (only none and private_key_jwt)'],
    ['nothing in common, other name', { token_endpoint_auth_methods: ['client_secret_post'] }, 'offers token_endpoint_auth_methods client_secret_post, none of which this gateway accepts from a metadata document (only none and private_key_jwt)'],
    ['a preference outside the list', { token_endpoint_auth_methods_supported: ['none'], token_endpoint_auth_method: 'private_key_jwt' }, 'prefers token_endpoint_auth_method private_key_jwt, which is not in its token_endpoint_auth_methods_supported (SEP-3149)'],
    ['two different lists', { token_endpoint_auth_methods_supported: ['none'], token_endpoint_auth_methods: ['private_key_jwt'] }, 'names two different lists in token_endpoint_auth_methods_supported and token_endpoint_auth_methods'],
    ['private_key_jwt only, without keys', { token_endpoint_auth_methods_supported: ['private_key_jwt'] }, 'uses private_key_jwt and must publish its keys in exactly one of jwks and jwks_uri'],
    ['an empty list', { token_endpoint_auth_methods_supported: [] }, 'has an invalid token_endpoint_auth_methods_supported: Too small: expected array to have >=1 items'],
  ]
  for (const [name, overrides, message] of refused) t.throws(() => parseDocument(URL_ID, document(overrides), false), new ClientMetadataError(message), name)
})

t.test('invalid documents are refused with the reason', async (t) => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /not a JSON object/],
    ['another client_id', document({ client_id: 'https://client.example/oauth/client.json/' }), /names another client_id/],
    ['no client_id', document({ client_id: undefined }), /client_id/],
    ['no redirect_uris', document({ redirect_uris: [] }), /redirect_uris/],
    ['a client secret', document({ client_secret: 's3cret' }), /must not contain a client_secret/],
    ['client_secret_basic', document({ token_endpoint_auth_method: 'client_secret_basic' }), /only use none or private_key_jwt/],
    ['client_secret_jwt', document({ token_endpoint_auth_method: 'client_secret_jwt' }), /only use none or private_key_jwt/],
    ['private_key_jwt without keys', document({ token_endpoint_auth_method: 'private_key_jwt' }), /exactly one of jwks and jwks_uri/],
    ['private_key_jwt with both', document({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [PUBLIC_KEY] }, jwks_uri: 'https://client.example/jwks' }), /exactly one/],
    ['a private key', document({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...PUBLIC_KEY, d: 'secret' }] } }), /private or symmetric/],
    ['a symmetric key', document({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }), /private or symmetric/],
    ['a jwks_uri on a private address', document({ token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'https://192.168.0.10/jwks' }), /jwks_uri that points to a private/],
    ['a bad redirect URI', document({ redirect_uris: ['https://client.example/cb#frag'] }), /redirect_uris\[0\]/],
    ['an http redirect off loopback', document({ redirect_uris: ['http://client.example/cb'] }), /redirect_uris\[0\].*https/],
    ['no authorization_code grant', document({ grant_types: ['client_credentials'] }), /authorization_code/],
    ['no code response type', document({ response_types: ['token'] }), /response_type code/],
    ['a very long name', document({ client_name: 'x'.repeat(300) }), /client_name/],
  ]
  for (const [name, json, reason] of refused) t.throws(() => parseDocument(URL_ID, json, false), reason, name)
})

t.test('cache lifetime honours Cache-Control and Expires within the bound', async (t) => {
  const bounds = { defaultCacheSeconds: 300, maxCacheSeconds: 3600 }
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(cacheLifetime({}, bounds, now), 300, 'no header: the default')
  t.equal(cacheLifetime({ cacheControl: 'public, max-age=120' }, bounds, now), 120, 'max-age')
  t.equal(cacheLifetime({ cacheControl: 'max-age=86400' }, bounds, now), 3600, 'bounded by maxCacheSeconds')
  t.equal(cacheLifetime({ cacheControl: 'max-age=0' }, bounds, now), 0)
  t.equal(cacheLifetime({ cacheControl: 'no-store' }, bounds, now), 0, 'no-store: not cached')
  t.equal(cacheLifetime({ cacheControl: 'max-age=600, no-cache' }, bounds, now), 0, 'no-cache: not cached')
  t.equal(cacheLifetime({ expires: 'Thu, 01 Jan 2026 00:10:00 GMT', date: 'Thu, 01 Jan 2026 00:00:00 GMT' }, bounds, now), 600, 'Expires minus Date')
  t.equal(cacheLifetime({ expires: '0' }, bounds, now), 0, 'an invalid Expires is already expired')
  t.equal(cacheLifetime({ cacheControl: 'max-age=60', expires: 'Thu, 01 Jan 2026 10:00:00 GMT' }, bounds, now), 60, 'max-age wins over Expires')
})

/** A fetcher standing in for the public internet: answers from a table, counts fetches. */
function fakeFetcher(answers: Record<string, FetchedJson | Error>) {
  const fetched: string[] = []
  const fetcher: ClientMetadataFetcher = {
    async fetchJson(url) {
      fetched.push(url)
      const answer = answers[url]
      if (!answer) throw new FetchRefused('answered HTTP 404 instead of 200')
      if (answer instanceof Error) throw answer
      await new Promise((resolve) => setTimeout(resolve, 5))
      return structuredClone(answer)
    },
    async close() {},
  }
  return { fetcher, fetched }
}

const settings = (overrides: Partial<Config['clientMetadataDocuments']> = {}): Config['clientMetadataDocuments'] => ({
  enabled: true,
  maxBytes: 5120,
  jwksMaxBytes: 32768,
  timeoutMs: 1000,
  defaultCacheSeconds: 300,
  maxCacheSeconds: 3600,
  maxCachedDocuments: 1000,
  developmentAllowLoopback: false,
  ...overrides,
})

t.test('documents are cached in the store as their headers allow, and shared through it', async (t) => {
  const store = new MemoryStore()
  const { fetcher, fetched } = fakeFetcher({ [URL_ID]: { json: document(), cacheControl: 'max-age=60' } })
  const documents = new ClientMetadataDocuments(fetcher, store, settings())
  t.equal((await documents.resolve(URL_ID)).client_name, 'Example')
  t.equal((await documents.resolve(URL_ID)).client_name, 'Example')
  t.equal(fetched.length, 1, 'fetched once')
  // Another replica on the same store: no fetch at all.
  const { fetcher: other, fetched: otherFetched } = fakeFetcher({})
  t.equal((await new ClientMetadataDocuments(other, store, settings()).resolve(URL_ID)).client_name, 'Example')
  t.equal(otherFetched.length, 0, 'the second replica read the shared cache')
})

t.test('no-store documents and invalid documents are not cached', async (t) => {
  const invalidUrl = 'https://client.example/invalid.json'
  const { fetcher, fetched } = fakeFetcher({
    [URL_ID]: { json: document(), cacheControl: 'no-store' },
    [invalidUrl]: { json: document({ client_id: 'https://elsewhere.example/x' }), cacheControl: 'max-age=600' },
  })
  const documents = new ClientMetadataDocuments(fetcher, new MemoryStore(), settings())
  await documents.resolve(URL_ID)
  await documents.resolve(URL_ID)
  t.equal(fetched.filter((url) => url === URL_ID).length, 2, 'no-store: fetched every time')
  await t.rejects(documents.resolve(invalidUrl), ClientMetadataError)
  await t.rejects(documents.resolve(invalidUrl), /names another client_id/)
  t.equal(fetched.filter((url) => url === invalidUrl).length, 2, 'an invalid document is fetched again, never cached')
})

t.test('one replica never caches more than maxCachedDocuments', async (t) => {
  const urls = ['a', 'b', 'c'].map((name) => `https://client.example/${name}.json`)
  const { fetcher, fetched } = fakeFetcher(Object.fromEntries(urls.map((url) => [url, { json: document({ client_id: url }), cacheControl: 'max-age=600' }])))
  const documents = new ClientMetadataDocuments(fetcher, new MemoryStore(), settings({ maxCachedDocuments: 2 }))
  for (const url of urls) await documents.resolve(url)
  for (const url of urls) await documents.resolve(url)
  t.same(fetched, [...urls, urls[2]], 'the first two are cached, the third is fetched again')
})

t.test('concurrent resolutions of one URL share one fetch', async (t) => {
  const { fetcher, fetched } = fakeFetcher({ [URL_ID]: { json: document(), cacheControl: 'no-store' } })
  const documents = new ClientMetadataDocuments(fetcher, new MemoryStore(), settings())
  const clients = await Promise.all([documents.resolve(URL_ID), documents.resolve(URL_ID), documents.resolve(URL_ID)])
  t.equal(clients.length, 3)
  t.equal(fetched.length, 1)
})

t.test('fetch failures become ClientMetadataError with the reason', async (t) => {
  const { fetcher } = fakeFetcher({ [URL_ID]: new FetchRefused('did not answer within 1000 ms') })
  const documents = new ClientMetadataDocuments(fetcher, new MemoryStore(), settings())
  await t.rejects(documents.resolve(URL_ID), { name: 'ClientMetadataError', message: 'did not answer within 1000 ms' })
  await t.rejects(documents.resolve('http://client.example/x.json'), { name: 'ClientMetadataError', message: /https/ }, 'refused before any fetch')
})

t.test('key sets: inline, or fetched from jwks_uri and cached', async (t) => {
  const jwksUri = 'https://client.example/jwks.json'
  const { fetcher, fetched } = fakeFetcher({ [jwksUri]: { json: { keys: [PUBLIC_KEY] }, cacheControl: 'max-age=60' } })
  const documents = new ClientMetadataDocuments(fetcher, new MemoryStore(), settings())
  const inline = parseDocument(URL_ID, document({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [PUBLIC_KEY] } }), false)
  t.same((await documents.keySet(inline)).keys, { keys: [PUBLIC_KEY] })
  const byUri = parseDocument(URL_ID, document({ token_endpoint_auth_method: 'private_key_jwt', jwks_uri: jwksUri }), false)
  t.same(await documents.keySet(byUri), { keys: { keys: [PUBLIC_KEY] }, fresh: true })
  t.same(await documents.keySet(byUri), { keys: { keys: [PUBLIC_KEY] }, fresh: false }, 'from the cache')
  t.same(await documents.keySet(byUri, true), { keys: { keys: [PUBLIC_KEY] }, fresh: true }, 'refresh skips the cache')
  t.equal(fetched.length, 2)
  const { fetcher: leaky } = fakeFetcher({ [jwksUri]: { json: { keys: [{ ...PUBLIC_KEY, d: 'private' }] } } })
  await t.rejects(new ClientMetadataDocuments(leaky, new MemoryStore(), settings()).keySet(byUri), /private or symmetric/)
})
