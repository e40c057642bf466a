/**
 * Sealing: authenticated encryption (AES-256-GCM) of everything the gateway
 * hands out and later takes back (client ids, transaction state, codes,
 * refresh tokens, the consent page's pending authorization, CSRF token and
 * cookie) or keeps in the shared store (remembered token answers), and
 * MACs for derived client secrets. Keys come from GATEWAY_SECRET: the first
 * seals and signs, every key opens and verifies, so keys rotate without
 * breaking what was issued under the old one.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, createSecretKey, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto'

/** What a sealed value is for; bound as additional data so one purpose's value never opens as another's. */
/** 'refresh' is the refresh token issued before grants (accepted once, on upgrade); 'grant' the one that names its grant; 'stored' the upstream refresh token kept in a grant. */
export type Purpose = 'client' | 'transaction' | 'code' | 'refresh' | 'grant' | 'stored' | 'pending' | 'csrf' | 'consent' | 'answer'

/** Keys are KeyObjects, prepared once: a raw key buffer costs a key import on every seal and open. */
interface Key {
  id: string
  seal: Map<Purpose, KeyObject>
  mac: KeyObject
}

const PURPOSES: Purpose[] = ['client', 'transaction', 'code', 'refresh', 'grant', 'stored', 'pending', 'csrf', 'consent', 'answer']
const IV_BYTES = 12
const TAG_BYTES = 16

function derive(secret: string, info: string) {
  return Buffer.from(hkdfSync('sha256', secret, 'oauth-gateway', info, 32))
}

function makeKey(secret: string): Key {
  return {
    id: createHash('sha256').update(derive(secret, 'key-id')).digest('base64url').slice(0, 6),
    seal: new Map(PURPOSES.map((purpose) => [purpose, createSecretKey(derive(secret, `seal:${purpose}`))])),
    mac: createSecretKey(derive(secret, 'mac')),
  }
}

export class Sealer {
  readonly #keys: Key[]

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error('at least one secret is needed')
    this.#keys = secrets.map(makeKey)
  }

  /** Seals a JSON-serialisable payload; `ttlSeconds` adds an expiry that `open` enforces. */
  seal(purpose: Purpose, payload: object, ttlSeconds?: number): string {
    const key = this.#keys[0]!
    const body = ttlSeconds === undefined ? payload : { ...payload, exp: nowSeconds() + ttlSeconds }
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', key.seal.get(purpose)!, iv)
    cipher.setAAD(Buffer.from(purpose))
    const data = Buffer.concat([cipher.update(JSON.stringify(body), 'utf8'), cipher.final(), cipher.getAuthTag()])
    return `${key.id}.${iv.toString('base64url')}.${data.toString('base64url')}`
  }

  /** Opens a sealed value; undefined when it is forged, for another purpose, under an unknown key, or expired. */
  open<T extends object>(purpose: Purpose, sealed: unknown): T | undefined {
    if (typeof sealed !== 'string' || sealed.length > maxSealedLength(purpose)) return undefined
    const [keyId, ivText, dataText, extra] = sealed.split('.')
    if (!keyId || !ivText || !dataText || extra !== undefined) return undefined
    const key = this.#keys.find((candidate) => candidate.id === keyId)
    if (!key) return undefined
    const iv = Buffer.from(ivText, 'base64url')
    const data = Buffer.from(dataText, 'base64url')
    if (iv.length !== IV_BYTES || data.length <= TAG_BYTES) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.seal.get(purpose)!, iv)
      decipher.setAAD(Buffer.from(purpose))
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES))
      const text = Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()])
      const payload = JSON.parse(text.toString('utf8')) as T & { exp?: number }
      if (typeof payload.exp === 'number' && payload.exp < nowSeconds()) return undefined
      return payload
    } catch {
      return undefined
    }
  }

  /** A MAC under the signing key. */
  sign(data: string): string {
    return createHmac('sha256', this.#keys[0]!.mac).update(data).digest('base64url')
  }

  /** Verifies a MAC under any key, in constant time. */
  verify(data: string, mac: unknown): boolean {
    if (typeof mac !== 'string') return false
    const given = Buffer.from(mac)
    return this.#keys.some((key) => {
      const expected = Buffer.from(createHmac('sha256', key.mac).update(data).digest('base64url'))
      return expected.length === given.length && timingSafeEqual(expected, given)
    })
  }
}

/** Values from clients are bounded; remembered answers come from the gateway's own store and hold whole token responses. */
function maxSealedLength(purpose: Purpose) {
  return purpose === 'answer' ? 64 * 1024 : 8192
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}
