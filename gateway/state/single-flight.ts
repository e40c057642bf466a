/**
 * Single flight across replicas, through the shared Store: of several
 * identical requests (ChatGPT's duplicate code exchange, a client's
 * concurrent or retried refresh) the first does the work and the others,
 * concurrent or within a short window, get its answer. A lock key with a
 * TTL says the work is running; the answer is sealed before it is stored, so
 * tokens never sit in plain text in a shared store. Waiters poll.
 */
import { createHash } from 'node:crypto'
import { OAuthError, toOAuthError } from '../errors.ts'
import type { Sealer } from './seal.ts'
import type { Store } from './store.ts'

export interface Flight {
  /** Set while the work runs, so that identical requests wait instead of repeating it. */
  lockKey: string
  lockSeconds: number
  /**
   * For single-use work (codes): the lock stays, marked done, for this long,
   * so a later repeat is refused once its answer is forgotten. Without it the
   * lock is released (refresh tokens: the upstream judges a later repeat).
   */
  doneSeconds?: number
  /**
   * The lock is taken with a durable write (Store WriteOptions): once the work
   * starts, a Redis failover cannot forget that it did, so single-use work
   * (codes) is never done twice.
   */
  durable?: boolean
  answerKey: string
  /** How long the answer is given again. */
  answerSeconds: number
  /** Only a request with the same binding (client, verifier, scope) gets the remembered answer. */
  binding: string
  /** How long an identical request waits for the running one's answer. */
  waitMs: number
}

export type Outcome<T> =
  | { kind: 'answered'; value: T; repeated: boolean }
  /** Done before, and its answer no longer remembered. */
  | { kind: 'spent' }
  /** Remembered for a request that differs (another verifier or scope). */
  | { kind: 'mismatch' }
  /** Still running after `waitMs` (or its replica died while running). */
  | { kind: 'busy' }

interface Remembered {
  /** hash of the binding */
  b: string
  ok?: unknown
  err?: { status: number; error: string; description: string }
}

const RUNNING = 'running'
const DONE = 'done'
const POLL_MS = 50

/** Store keys carry hashes, never codes or tokens. */
export function hashOf(value: string): string {
  return createHash('sha256').update(value).digest('base64url')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs `work` once for identical requests; throws what `work` threw, or the remembered error. */
export async function singleFlight<T>(shared: { store: Store; sealer: Sealer }, flight: Flight, work: () => Promise<T>): Promise<Outcome<T>> {
  const deadline = Date.now() + flight.waitMs
  for (;;) {
    const remembered = await recall(shared, flight)
    if (remembered) return replay<T>(remembered, flight)
    if (await shared.store.setIfAbsent(flight.lockKey, RUNNING, flight.lockSeconds, { durable: flight.durable === true })) return lead(shared, flight, work)
    if ((await shared.store.get(flight.lockKey)) === DONE) {
      // The answer is written before the lock is marked done: look once more.
      const late = await recall(shared, flight)
      return late ? replay<T>(late, flight) : { kind: 'spent' }
    }
    if (Date.now() >= deadline) return { kind: 'busy' }
    await sleep(POLL_MS)
  }
}

async function lead<T>(shared: { store: Store; sealer: Sealer }, flight: Flight, work: () => Promise<T>): Promise<Outcome<T>> {
  let value: T
  try {
    value = await work()
  } catch (err) {
    const error = toOAuthError(err)
    if (error.error === 'temporarily_unavailable') {
      // Nothing was spent at the upstream as far as the gateway knows: a retry may run the work again.
      await shared.store.delete(flight.lockKey)
      throw err
    }
    await remember(shared, flight, { b: hashOf(flight.binding), err: { status: error.status, error: error.error, description: error.message } })
    await settle(shared, flight)
    throw err
  }
  await remember(shared, flight, { b: hashOf(flight.binding), ok: value })
  await settle(shared, flight)
  return { kind: 'answered', value, repeated: false }
}

async function remember(shared: { store: Store; sealer: Sealer }, flight: Flight, record: Remembered) {
  await shared.store.set(flight.answerKey, shared.sealer.seal('answer', record, flight.answerSeconds), flight.answerSeconds)
}

async function settle(shared: { store: Store }, flight: Flight) {
  if (flight.doneSeconds === undefined) await shared.store.delete(flight.lockKey)
  else await shared.store.set(flight.lockKey, DONE, flight.doneSeconds)
}

async function recall(shared: { store: Store; sealer: Sealer }, flight: Flight): Promise<Remembered | undefined> {
  const sealed = await shared.store.get(flight.answerKey)
  return sealed === undefined ? undefined : shared.sealer.open<Remembered>('answer', sealed)
}

function replay<T>(remembered: Remembered, flight: Flight): Outcome<T> {
  if (remembered.b !== hashOf(flight.binding)) return { kind: 'mismatch' }
  if (remembered.err) throw new OAuthError(remembered.err.status, remembered.err.error, remembered.err.description)
  return { kind: 'answered', value: remembered.ok as T, repeated: true }
}
