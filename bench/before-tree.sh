#!/bin/sh
# Makes a "before" tree for `bench/egress.ts --before DIR` and `bench/ingress.ts --before DIR`: the sources
# of COMMIT in DIR, this checkout's node_modules (symlinked), its own addon and dist/ built there.
#   bench/before-tree.sh 0fcd17e /tmp/cloister-before
set -eu
commit=$1
dir=$2
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"
mkdir -p "$dir"
git -C "$here" archive "$commit" | tar -x -C "$dir"
ln -s "$here/node_modules" "$dir/node_modules"
cd "$dir"
npm run --silent install >/dev/null # the package's own addon build (node-gyp rebuild --directory native)
node scripts/build.mjs >/dev/null
echo "$dir: $(git -C "$here" rev-parse --short "$commit") with its addon and dist/"
