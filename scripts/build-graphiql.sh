#!/usr/bin/env bash
# Builds GraphiQL for --dev (GET /graphql in a browser): installs the npm
# packages pinned in web/graphiql/package-lock.json and bundles them with
# esbuild into web/graphiql/dist, which the binary embeds (web/graphiql.go).
# dist is not committed; without this step the binary serves the small
# explorer instead. Run by scripts/test.sh; rebuild the binary afterwards.
set -euo pipefail
cd "$(dirname "$0")/../web/graphiql"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund
fi
node build.mjs
