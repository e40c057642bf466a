/**
 * The ceiling: a bare Fastify route that answers the gateway's metadata
 * document, with the same content type, and nothing else (Fastify's
 * defaults: no logger, no hooks, no plugins). argv: port, then the body.
 */
import Fastify from 'fastify'

const [port, body] = process.argv.slice(2)
if (!port || !body) throw new Error('usage: ceiling.ts <port> <json body>')
const app = Fastify()
app.get('/.well-known/oauth-authorization-server', async (_request, reply) => reply.type('application/json; charset=utf-8').send(body))
await app.listen({ port: Number(port), host: '127.0.0.1' })
process.stdout.write('listening\n')
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)))
