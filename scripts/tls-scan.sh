#!/usr/bin/env bash
# TLS scan of the partner listener with sslyze (PyPI) against Mozilla's "intermediate" profile, with an example
# client certificate (the listener demands one).
#
# Two runs:
#   1. the gateway as shipped (certs-example/gateway.crt): shows the TLS configuration (versions, suites, groups)
#      and flags the example server certificate (20-year lifetime, CA not in Mozilla's store);
#   2. the same TLS configuration with a 90-day server certificate from the same example CA, the CA given to sslyze
#      as trust anchor: the verdict for the configuration itself.
# Exit status 0 only when run 2 is compliant.
# Usage: scripts/tls-scan.sh            (needs python3, openssl; creates /tmp/sslyze-venv on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
venv="${SSLYZE_VENV:-/tmp/sslyze-venv}"
[ -x "$venv/bin/sslyze" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q sslyze; }
cargo build --quiet --locked
work="$(mktemp -d /tmp/kp-tls-scan.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

certs="$repo/certs-example"
# A server certificate as a real deployment would have it: one year at most (here 90 days), same key type.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/scan.key" \
  -subj "/C=NL/O=ketenpoort (voorbeeld)/CN=localhost" -out "$work/scan.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
  > "$work/ext"
openssl x509 -req -in "$work/scan.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
  -CAserial "$work/ca.srl" -days 90 -sha256 -extfile "$work/ext" -out "$work/scan.crt" 2>/dev/null

scan() { # $1 = server cert, $2 = server key, $3 = label, extra sslyze args after
  local cert="$1" key="$2" label="$3"; shift 3
  cat > "$work/ketenpoort.toml" <<EOF
[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"
shutdown_grace_secs = 1
[tls]
ca = "$certs/ca.crt"
crl = "$certs/crl.pem"
cert = "$cert"
key = "$key"
partners = "$certs/partners.toml"
[storage]
database_url = "sqlite://$work/k.db"
key_dir = "$work/keys"
[policies]
dir = "$repo/policies"
EOF
  "$repo/target/debug/ketenpoort" serve --config "$work/ketenpoort.toml" > "$work/out" 2> "$work/err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q partner= "$work/out" 2>/dev/null && break; sleep 0.1; done
  local port
  port="$(sed -n 's#.*partner=https://127.0.0.1:\([0-9]*\).*#\1#p' "$work/out")"
  echo "== $label: sslyze --mozilla_config=intermediate --cert obs-de-linde.crt $* localhost:$port"
  set +e
  "$venv/bin/sslyze" --cert "$certs/obs-de-linde.crt" --key "$certs/obs-de-linde.key" \
    --mozilla_config=intermediate "$@" "localhost:$port{127.0.0.1}" > "$work/sslyze.txt" 2>&1
  local rc=$?
  set -e
  sed -n '/SSL 2.0 Cipher Suites/,/TLS Extended Master Secret/p;/COMPLIANCE AGAINST/,$p' "$work/sslyze.txt" \
    | grep -vE '^\s*$'
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  return $rc
}

scan "$certs/gateway.crt" "$certs/gateway.key" "as shipped (example certificate)" || true
scan "$work/scan.crt" "$work/scan.key" "90-day server certificate, example CA trusted" \
  --certinfo_ca_file "$certs/ca.crt"
