#!/usr/bin/env bash
# Refreshes the Swagger UI files embedded in api/docs from the npm registry:
#   scripts/update-swagger-ui.sh 5.35.0
set -euo pipefail
version=${1:?usage: $0 VERSION}
cd "$(dirname "$0")/../api/docs/assets"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
cp "$tmp/package/swagger-ui-bundle.js" "$tmp/package/swagger-ui.css" "$tmp/package/favicon-32x32.png" .
cp "$tmp/package/LICENSE" LICENSE.swagger-ui
echo "swagger-ui-dist $version" > VERSION
