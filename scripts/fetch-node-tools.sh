#!/usr/bin/env bash
# Install the pinned Node tools the dashboard test needs (typescript, @grafana/schema)
# into .cache/node, from scripts/node-tools/package.json and its package-lock.json.
#
# Idempotent: when .cache/node already holds exactly the locked versions it does
# nothing. Needs node and npm (Node 20 works). Prints the folder on stdout.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/scripts/node-tools"
dest="${NODE_TOOLS_DIR:-$root/.cache/node}"

command -v npm >/dev/null || { echo "fetch-node-tools: npm is missing (apt-get install -y nodejs npm)" >&2; exit 1; }
mkdir -p "$dest"

if [ ! -f "$src/package-lock.json" ]; then
    # First run for a maintainer: resolve the pinned versions and write the lock.
    cp "$src/package.json" "$dest/package.json"
    npm install --prefix "$dest" --no-audit --no-fund --ignore-scripts >&2
    cp "$dest/package-lock.json" "$src/package-lock.json"
fi

if cmp -s "$src/package-lock.json" "$dest/.installed-lock.json" \
    && [ -x "$dest/node_modules/.bin/tsc" ]; then
    echo "$dest"
    exit 0
fi

cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts >&2)
cp "$src/package-lock.json" "$dest/.installed-lock.json"
"$dest/node_modules/.bin/tsc" --version >&2
echo "$dest"
