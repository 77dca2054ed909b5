# syntax=docker/dockerfile:1
# One image for every leafbridge process: `agent` (the DaemonSet), `controller`, `hub`, and `simulate`/`get`.
#   docker build -t leafbridge:dev .            (multi-arch: docker buildx build --platform linux/amd64,linux/arm64 .)
#   docker run --rm leafbridge:dev --help
# It runs as uid 65532, not root. The controller and the hub need nothing more. The agent's DaemonSet
# (`leafbridge manifests`, deploy/agent/daemonset.yaml) runs it as root with no capabilities: the kubelet's
# device-plugin directory and PodResources socket belong to root; with the serial handler it is privileged,
# since only a privileged container may open the node's /dev/tty* devices.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: all dependencies, TypeScript compiled, then the dev dependencies pruned ---------------------------
FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles from source when its prebuilt binary cannot be downloaded (node-gyp: python3, make, g++).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# No lifecycle scripts yet: `prepare` would build before the sources are here. Then the two native modules
# are built for this image's Node and libc (serialport's bindings ship prebuilds; better-sqlite3 fetches or compiles).
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 @serialport/bindings-cpp
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY discovery-handlers ./discovery-handlers
COPY firmware-stubs ./firmware-stubs
COPY examples ./examples
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies and the compiled code only ---------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
USER 65532:65532
ENTRYPOINT ["/app/bin/leafbridge"]
CMD ["--help"]
