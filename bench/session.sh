#!/usr/bin/env bash
# bench/session.sh [--bin PATH] [SECS] [REPS] [CONNS]
#
# A browser session against a cached HS256 bearer token, on ONE jwtgate
# instance (the same process serves both, so nothing but the credential
# differs): wrk -t1 -cCONNS, interleaved rounds (bearer, session, bearer,
# session, ...), mode "three" of the peer lab (wrk and the nginx upstream on
# CPU 0, jwtgate alone on CPU 1), worker_threads = 1.
#
# The session cookie is sealed by `jwtgate create-token --session` with the
# configured key (what a real sign-in would set, without a refresh token);
# the bearer token is the lab's HS256 token, verified once and then served
# from the token cache. Issue 19's goal: session req/s >= 0.95x bearer, p99
# <= 1.1x.
#
# Needs the peer lab's nginx upstream on 127.0.0.1:8080 and its HS256 key
# and token (bash ../shared/peers/lab.sh install/keys/configs/start, or a
# first run of bench/compare.sh). Sends traffic to 127.0.0.1 only; every
# wrk run is bounded by SECS (at most 15).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${JWTGATE_BIN:-$ROOT/target/release/jwtgate}
if [ "${1:-}" = --bin ]; then BIN=$2; shift 2; fi
SECS=${1:-10}; REPS=${2:-3}; CONNS=${3:-32}
[ "$SECS" -le 15 ] || SECS=15
L=/tmp/peerlab; W=$L/jwtgate-session; PORT=8151
die() { echo "session.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no jwtgate binary at $BIN (cargo build --release)"
[ -f "$L/keys/hs256.secret" ] && [ -f "$L/tokens/hs256_valid.jwt" ] || die "peer lab keys missing: bash ../shared/peers/lab.sh keys"
curl -s -o /dev/null "http://127.0.0.1:8080/" || die "the lab's nginx upstream on :8080 is down: bash ../shared/peers/lab.sh start"
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
mkdir -p "$W"
"$BIN" gen-key --session > "$W/session.keys"
secret=$(cat "$L/keys/hs256.secret")
cat > "$W/jwtgate.toml" <<EOF
# written by bench/session.sh; regenerated on every run
listen = "127.0.0.1:$PORT"
admin_listen = ""
drain_timeout = "2s"
worker_threads = 1

[upstream]
url = "http://127.0.0.1:8080"

[auth]
token_cache = 10000

[auth.secret]
value = "$secret"
algorithms = ["HS256"]

# The provider is never asked: the cookie below has no refresh token.
[[auth.issuers]]
issuer = "https://idp.bench.invalid"

[login]
issuer = "https://idp.bench.invalid"
client_id = "bench"
external_url = "http://127.0.0.1:$PORT"
session_keys_file = "$W/session.keys"
EOF
cookie=$("$BIN" create-token --config "$W/jwtgate.toml" --session -u bench -d 120 \
  --claim email=bench@example.com --claim 'groups=["editors","staff"]' --claim name=Bench)
token=$(cat "$L/tokens/hs256_valid.jwt")
env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn "$BIN" serve --config "$W/jwtgate.toml" > "$W/jwtgate.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
taskset -a -cp 1 $pid > /dev/null
for f in $L/run/nginx-upstream.pid; do [ -f "$f" ] && for p in $(cat "$f") $(ps -o pid= --ppid "$(cat "$f")"); do taskset -a -cp 0 "$p" >/dev/null; done; done
check() { # HEADER: must be 200
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' -H "$1" "http://127.0.0.1:$PORT/")
  [ "$code" = 200 ] || die "probe with ${1%%:*} got $code (see $W/jwtgate.log)"
}
check "Authorization: Bearer $token"
check "Cookie: $cookie"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" = 401 ] || die "no credential was not 401"
run() { # NAME HEADER REP
  local f=$W/wrk-$1-$3.txt
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s --latency -H "$2" "http://127.0.0.1:$PORT/" > "$f" 2>&1
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec/{print $2}' "$f")
  p99=$(awk '$1=="99%"{print $2}' "$f")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$f"); non2xx=${non2xx:-0}
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$3" "$rps" "$p99" "$non2xx" | tee -a "$W/results.tsv"
}
: > "$W/results.tsv"
echo -e "target\trep\treq/s\tp99\tnon-2xx"
for r in $(seq "$REPS"); do
  run bearer-hs256-cached "Authorization: Bearer $token" "$r"
  run session "Cookie: $cookie" "$r"
done
python3 - "$W/results.tsv" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit): return float(v[:-len(unit)]) * f
    return float(v)
by = {}
for name, rep, rps, p99, bad in rows:
    by.setdefault(name, []).append((float(rps), ms(p99), int(bad)))
med = {n: (statistics.median(r for r, _, _ in v), statistics.median(p for _, p, _ in v), sum(b for *_, b in v)) for n, v in by.items()}
b, s = med["bearer-hs256-cached"], med["session"]
print(f"\nmedians: bearer {b[0]:.0f} req/s p99 {b[1]:.2f} ms | session {s[0]:.0f} req/s p99 {s[1]:.2f} ms | non-2xx {b[2]}/{s[2]}")
print(f"session/bearer: req/s {s[0]/b[0]:.3f} (goal >= 0.95), p99 {s[1]/b[1]:.3f} (goal <= 1.10)")
PY
