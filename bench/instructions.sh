#!/usr/bin/env bash
# instructions.sh — instructions per proxied request, counted by callgrind (repeatable, unlike wall-clock
# figures on a shared 2-core machine: the count does not depend on what else the machine is doing).
#
# usage: bench/instructions.sh BIN [KIND] [N1] [N2]
#   BIN   jwtgate binary (never built here)
#   KIND  hs256 (a cached HS256 bearer token, default) | hs256-nocache | rs256 (cached, the lab's RSA key) | plain
#         (a public route: the hop without a token)
#   N1/N2 requests in the two runs (default 500 and 2500); the figure is (I(N2) - I(N1)) / (N2 - N1), so the
#         start-up, the first request's connection set-up and the shutdown cancel out.
# One keep-alive client connection (Python http.client) sends the requests one after another; the upstream is
# the peer lab's nginx on 127.0.0.1:8080 (bash ../shared/peers/lab.sh start). worker_threads = 1.
set -euo pipefail
BIN=${1:?usage: bench/instructions.sh BIN [KIND] [N1] [N2]}
KIND=${2:-hs256}
N1=${3:-500}
N2=${4:-2500}
L=/tmp/peerlab
W=$(mktemp -d /tmp/jwtgate-instructions.XXXXXX)
trap 'rm -rf "$W"' EXIT
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
curl -s -o /dev/null http://127.0.0.1:8080/ || { echo "instructions.sh: no upstream on 127.0.0.1:8080 (start the peer lab)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read().rstrip("\n")))' "$L/keys/hs256.secret")
{
  echo "listen = \"127.0.0.1:$port\""
  echo 'admin_listen = ""'
  echo 'worker_threads = 1'
  echo '[upstream]'
  echo 'url = "http://127.0.0.1:8080"'
  echo '[auth]'
  [ "$KIND" = hs256-nocache ] && echo 'token_cache = 0'
  case $KIND in
    rs256)
      python3 - "$L/tokens/rs256_valid.jwt" "$L/www/jwks.json" <<'EOF_PY'
import base64, json, sys
p = json.loads(base64.urlsafe_b64decode(open(sys.argv[1]).read().split(".")[1] + "=="))
print("[[auth.issuers]]")
print("issuer = " + json.dumps(p["iss"]))
print("jwks_file = " + json.dumps(sys.argv[2]))
print('algorithms = ["RS256"]')
aud = p.get("aud")
if aud:
    print("audiences = " + json.dumps(aud if isinstance(aud, list) else [aud]))
EOF_PY
      ;;
    *)
      echo '[auth.secret]'
      echo "value = $secret"
      echo 'algorithms = ["HS256"]' ;;
  esac
  if [ "$KIND" = plain ]; then echo '[[routes]]'; echo 'prefix = "/"'; echo 'auth = "none"'; fi
} > "$W/gate.toml"
alg=${KIND%%-*}; [ "$alg" = plain ] && alg=hs256
token=$(cat "$L/tokens/${alg}_valid.jwt")
count() { # count N -> total instructions of a run with N requests
  local n=$1 out=$W/cg.$1 pid
  env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=error \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve --config "$W/gate.toml" 2>"$W/vg.$n.log" &
  pid=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  python3 - "$port" "$n" "$token" <<'EOF_PY'
import http.client, sys
port, n, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", "/", headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit(f"status {r.status}")
EOF_PY
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}
i1=$(count "$N1"); i2=$(count "$N2")
echo "$KIND: $(( (i2 - i1) / (N2 - N1) )) instructions per request ($BIN; I($N1) = $i1, I($N2) = $i2)"
