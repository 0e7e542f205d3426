# syntax=docker/dockerfile:1
# Build: compile TypeScript and the browser module with dev dependencies.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped here: the postinstall needs sources not copied yet,
# and the embedded Postgres binaries are not used in production.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
RUN node scripts/patch-postgres.mjs
COPY src ./src
COPY web-client ./web-client
RUN npm run build

# Runtime: production dependencies and compiled JS only, as a non-root user.
FROM node:20-slim AS runtime
ENV NODE_ENV=production PORT=3066
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
# postgres.js 3.4.9 crashes or hangs when a connection closes under a transaction (porsager/postgres#1208).
COPY scripts/patch-postgres.mjs ./scripts/patch-postgres.mjs
RUN node scripts/patch-postgres.mjs
COPY --from=build /app/dist ./dist
COPY --from=build /app/web-client/dist ./web-client/dist
COPY --from=build /app/web-client/demo ./web-client/demo
# SQL migrations are read at runtime next to the compiled migrate.js.
COPY src/db/migrations ./dist/src/db/migrations
COPY src/db/dev-sync-changes.sql ./dist/src/db/dev-sync-changes.sql
USER node
EXPOSE 3066
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3066)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]
