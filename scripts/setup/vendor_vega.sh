#!/usr/bin/env bash
# Vendors the chart runtime of `fool report html` into vendor/vega/: the minified UMD builds of
# vega, vega-lite and vega-embed, fetched from the npm registry with `npm pack` (pinned versions,
# integrity checked by npm), with their licenses (all BSD-3-Clause). The binary embeds these
# files (src/report/html/assets.rs), so a report opens offline with no network request.
# Run it only to change the versions; the files are committed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/vendor/vega"
VEGA=5.33.1
VEGA_LITE=5.23.0
VEGA_EMBED=6.29.0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
# vega's own package ships no LICENSE file; vega-util (same repository, same license) does.
for p in "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" "vega-util@2.1.3"; do
    tgz="$(npm pack --silent "$p")"
    name="${p%@*}"
    mkdir -p "$name"
    tar xzf "$tgz" -C "$name"
done
mkdir -p "$OUT"
cp vega/package/build/vega.min.js "$OUT/vega.min.js"
cp vega-lite/package/build/vega-lite.min.js "$OUT/vega-lite.min.js"
cp vega-embed/package/build/vega-embed.min.js "$OUT/vega-embed.min.js"
cp vega-util/package/LICENSE "$OUT/LICENSE-vega"
cp vega-lite/package/LICENSE "$OUT/LICENSE-vega-lite"
cp vega-embed/package/LICENSE "$OUT/LICENSE-vega-embed"
cat > "$OUT/VERSIONS" <<V
vega $VEGA (npm, build/vega.min.js)
vega-lite $VEGA_LITE (npm, build/vega-lite.min.js)
vega-embed $VEGA_EMBED (npm, build/vega-embed.min.js; bundles vega-tooltip)
licenses: BSD-3-Clause (vega's from vega-util, the same repository)
fetched by scripts/setup/vendor_vega.sh
V
# Source-map references would make a browser's developer tools ask for files that are not there.
sed -i 's|//# sourceMappingURL=.*$||' "$OUT"/*.min.js
ls -l "$OUT"
