# syntax=docker/dockerfile:1
# The gateway image: Node 24, production dependencies only, non-root. Node
# runs the TypeScript directly; there is no build step. One image serves every
# replica: they differ only in PORT, and share REDIS_URL and GATEWAY_SECRET.
# `--target standins` builds the development image that docker-compose uses
# for the stand-in upstream and MCP server.

FROM node:24-slim AS production-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-slim AS standins
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY gateway ./gateway
COPY config ./config
COPY test ./test
USER node
CMD ["node", "test/serve-standins.ts"]

FROM node:24-slim AS gateway
# docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="NeonPanel OAuth gateway" \
      org.opencontainers.image.description="OAuth 2.1 gateway that lets MCP clients sign in with NeonPanel" \
      org.opencontainers.image.vendor="NeonPanel" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-slim" \
      org.opencontainers.image.documentation="docs/kubernetes.md"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=production-deps /app/node_modules ./node_modules
COPY package.json ./
COPY gateway ./gateway
COPY config ./config
USER node
EXPOSE 8080
# Node is PID 1 and the gateway handles SIGTERM and SIGINT itself (server.ts:
# no new requests, in-flight ones finish, then exit), so no init process.
HEALTHCHECK --interval=10s --timeout=3s CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "gateway/server.ts"]
