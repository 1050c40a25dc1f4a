#!/usr/bin/env bash
# `npm test`: installs what the tests need (npm packages, Debian's registry, Docker engine,
# containerd and skopeo), builds, and runs every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/install-deps.sh
npx tsc -p tsconfig.json
exec node --test --test-concurrency=1 dist/test/
