# tormq: one image for both servers. Not built or run by this project: its machines have a Docker
# client but no daemon and cannot pull base images. The steps (npm ci, npm pack, installing the
# tarball) are the ones test/e2e/install.test.ts runs on every test run.
#
#   docker build -t tormq .
#   docker run --rm -p 5559:5559 -p 5560:5560 tormq tormq-mpc
#   docker run --rm -p 8000:8000 -e TORMQ_MPC=mpc-host:5560 tormq             # the gateway (default)
#   docker run --rm tormq tormq-gateway --print-config                          # what it would run with
#
# Every flag is also a TORMQ_* variable (--max-connections -> TORMQ_MAX_CONNECTIONS) or a key of a
# TOML file given with --config / TORMQ_CONFIG (mount it, e.g. -v ./gateway.toml:/etc/tormq/gateway.toml).

# Build: compile TypeScript and pack the package exactly as `npm pack` publishes it.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json README.md LICENSE ./
COPY src ./src
RUN npm pack --pack-destination /tmp && mv /tmp/tormq-*.tgz /tmp/tormq.tgz

# Run: the packed tarball installed globally, with production dependencies only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
COPY --from=build /tmp/tormq.tgz /tmp/tormq.tgz
RUN npm install --global --omit=dev --no-audit --no-fund /tmp/tormq.tgz && rm /tmp/tormq.tgz && npm cache clean --force
# Inside a container, "every interface" is the container's own network namespace: publish ports with -p.
# (The MPC's HTTP publishing still refuses to start on it without --http-token / TORMQ_HTTP_TOKEN.)
ENV TORMQ_HOST=0.0.0.0
USER node
# MPC: 5559 publishers, 5560 gateways. Gateway: 8000 WebSocket, 9100 admin (bound to 127.0.0.1
# unless TORMQ_ADMIN_HOST=0.0.0.0: /metrics for Prometheus).
EXPOSE 5559 5560 8000 9100
# SIGTERM drains (clients get 1001 over --drain-ms); give `docker stop` more than that (-t).
STOPSIGNAL SIGTERM
CMD ["tormq-gateway"]
