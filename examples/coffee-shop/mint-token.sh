#!/usr/bin/env bash
# Mints an RS256 token signed with the demo key, for trying the gateway:
#   ./examples/coffee-shop/mint-token.sh [subject] [seconds-valid]
# The key pair in keys/ is for this demo only; the gateway verifies with
# keys/demo-public.pem (gateway.config.yml, jwt policy).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
sub=${1:-coffee-lover}
ttl=${2:-86400}
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","iss":"coffee-shop","iat":%d,"exp":%d}' "$sub" "$now" "$((now + ttl))" | b64url)
sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$dir/keys/demo-private.pem" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$sig"
