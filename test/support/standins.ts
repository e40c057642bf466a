/**
 * The two stand-ins wired for a gateway at `gatewayUrl`, on the ports the
 * demo and docker-compose use: the upstream registers the gateway's callback,
 * and the MCP server's 401 names the gateway's protected resource metadata.
 */
import { startMcpServer, type StandInMcpServer } from './mcp-server.ts'
import { startUpstream, type StandInUpstream } from './upstream.ts'

export interface StandIns {
  upstream: StandInUpstream
  mcp: StandInMcpServer
  close(): Promise<void>
}

/** Ports from DEMO_UPSTREAM_PORT (4000) and DEMO_MCP_PORT (3001). */
export async function startStandIns(gatewayUrl: string, host: string, env: NodeJS.ProcessEnv = process.env): Promise<StandIns> {
  const upstream = await startUpstream({ host, port: Number(env.DEMO_UPSTREAM_PORT ?? 4000), redirectUris: [`${gatewayUrl}/callback`] })
  const mcp = await startMcpServer({
    host,
    port: Number(env.DEMO_MCP_PORT ?? 3001),
    upstream: { introspectionEndpoint: `${upstream.issuer}/token/introspection`, ...upstream.introspection },
    resourceMetadataUrl: `${gatewayUrl}/.well-known/oauth-protected-resource/mcp`,
  })
  return {
    upstream,
    mcp,
    async close() {
      await mcp.close()
      await upstream.close()
    },
  }
}
