#!/usr/bin/env bash
# Installs the npm packages the web tests use (tests/web/package.json, pinned by
# its package-lock.json: the official OpenAI client) into DIR/node_modules.
# Runs `npm ci` only when DIR lacks them or the lock file changed.
set -euo pipefail
dir=${1:?usage: install-npm-deps.sh DIR}
src="$(cd "$(dirname "$0")/.." && pwd)/tests/web"
if ! command -v npm >/dev/null; then
  echo "npm-deps: npm not found (make deps installs it from Debian)" >&2
  exit 1
fi
mkdir -p "$dir"
if [ -d "$dir/node_modules/openai" ] && cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dir/"
echo "npm-deps: installing $(cd "$dir" && node -p 'Object.keys(require("./package.json").dependencies).join(" ")') into $dir" >&2
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
