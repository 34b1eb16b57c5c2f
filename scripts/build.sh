#!/bin/sh
# Compiles src/ to JavaScript in dist/, which bin/shoal runs while it is as new as src/ (and
# src/ itself, with Node's type stripping, otherwise). Run by `npm ci` (prepare) and `npm run
# build`. Why: a node running the .ts sources kept Node's compile cache (~5 MiB) in memory for
# its life, or, without a cache, Node's type stripper (~20 MiB); docs/architecture.md, "Runtime".
set -eu
root=$(dirname "$(dirname "$(readlink -f "$0")")")
cd "$root"
if [ ! -x node_modules/.bin/tsc ]; then
  # An install without dev dependencies: bin/shoal runs src/ as it is.
  echo "shoal build: no TypeScript compiler (dev dependencies not installed); bin/shoal runs src/" >&2
  exit 0
fi
rm -rf dist
# noCheck: types are npm test's business (tsc --noEmit); the build only strips them.
node_modules/.bin/tsc -p tsconfig.build.json
cp -R src/web/assets dist/web/assets
# The stamp bin/shoal compares src/ against: written last, so every source is older than it.
touch dist/.built
