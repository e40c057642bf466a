/**
 * The stand-in upstream (oidc-provider) in a process of its own, so that in
 * the benchmark it takes no CPU from the process it is compared with.
 * argv: the redirect URI to register for the gateway's client (its callback).
 * Prints one JSON line once listening: issuer, client, secret and account.
 */
import { startUpstream } from '../support/upstream.ts'

const callback = process.argv[2]
if (!callback) throw new Error('usage: upstream-process.ts <gateway callback URL>')
const upstream = await startUpstream({ redirectUris: [callback] })
const { issuer, clientId, clientSecret, account } = upstream
process.stdout.write(`${JSON.stringify({ issuer, clientId, clientSecret, account })}\n`)
process.once('SIGTERM', () => void upstream.close().then(() => process.exit(0)))
