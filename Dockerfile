# The integration-agent worker (and CLI) image.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    INTEGRATION_AGENT_DATA_DIR=/data \
    INTEGRATION_AGENT_REGISTRY=/config/services.yaml
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/lib ./lib
COPY package.json ./
COPY bin ./bin
COPY examples ./examples
COPY web ./web
RUN mkdir -p /data /config && chown node:node /data && cp examples/services.yaml /config/services.yaml
USER node
VOLUME ["/data"]
ENTRYPOINT ["node", "bin/integration-agent.js"]
CMD ["worker"]
