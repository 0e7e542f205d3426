# syntax=docker/dockerfile:1
# The production image: Node 22 LTS, compiled JS only, production
# dependencies only (no embedded Postgres binaries, no tsx, no test tools),
# a patched postgres.js, running as the non-root `node` user.

# Build: compile TypeScript and the browser module with dev dependencies.
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped here: the postinstall needs sources not copied yet,
# and the embedded Postgres binaries are never used in the image.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
RUN node scripts/patch-postgres.mjs
COPY src ./src
COPY web-client ./web-client
RUN npm run build

# Runtime: production dependencies and compiled JS only.
FROM node:22-slim AS runtime
ENV NODE_ENV=production PORT=3066
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
# postgres.js crashes or hangs when a connection closes under a transaction;
# the patch fails this build when it does not apply, and the start refuses
# an unpatched driver.
COPY scripts/patch-postgres.mjs ./scripts/patch-postgres.mjs
RUN node scripts/patch-postgres.mjs
COPY --from=build /app/dist ./dist
COPY --from=build /app/web-client/dist ./web-client/dist
# SQL migrations are read at runtime next to the compiled migrate.js.
COPY src/db/migrations ./dist/src/db/migrations
COPY src/db/dev-sync-changes.sql ./dist/src/db/dev-sync-changes.sql
USER node
EXPOSE 3066
# /health answers {"status":"ok"} without credentials and never touches the database.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3066)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/src/main.js"]
