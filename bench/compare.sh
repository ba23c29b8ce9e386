#!/usr/bin/env bash
# compare.sh — benchmark jwtgate beside the peer lab (HAProxy jwt_verify, Apache mod_auth_openidc), like for like.
#
# usage: bench/compare.sh [--bin PATH | PATH] [MODE] [SECS] [REPS]
#   PATH  jwtgate binary (default: target/release/jwtgate under the repo root; also env JWTGATE_BIN).
#         Never built here: build it yourself first.
#   MODE  none | split | three (default three: wrk + upstream on CPU 0, proxy under test alone on CPU 1)
#   SECS  seconds per wrk run (default 10, bench.sh caps it at 15)
#   REPS  repetitions per target (default 3; the summary reports medians)
# env:
#   ONLY="a b"     run only the named targets (peers and/or jwtgate-*); jwtgate instances not named are not started
#   JWKS_URI=1     also start jwtgate-rs256-jwks (:8122) and jwtgate-es256-jwks (:8123), keys over https://127.0.0.1:8444
#                  (the lab's www/jwks.json, served with a CA-signed certificate; see start_jwks_https),
#                  and their -nocache twins (:8132, :8133)
#   CONNS=N        wrk connections (default 32, as in bench.sh)
#   CHECK=0        skip the curl correctness matrix (check.sh) on the jwtgate instances
#   TOKIO_WORKER_THREADS=N   passed through to jwtgate if set
#   JWTGATE_WORKER_THREADS=N passed through to jwtgate if set (1 = single-threaded runtime);
#                            these two are the only variables passed besides PATH, HOME, RUST_LOG
# Everything listens on and targets 127.0.0.1 only. Working directory: /tmp/peerlab (see ../shared/peers/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$(cd "$ROOT/../shared/peers" && pwd)
L=/tmp/peerlab
J=$L/jwtgate
RESULTS=$L/bench/results.tsv

usage() { sed -n 2,17p "$0"; exit 2; }

# ---------- arguments ----------
BIN=${JWTGATE_BIN:-}
pos=()
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage ;;
    --bin) [ $# -ge 2 ] || usage; BIN=$2; shift 2 ;;
    --bin=*) BIN=${1#--bin=}; shift ;;
    *) pos+=("$1"); shift ;;
  esac
done
# first positional is the binary unless it looks like a MODE or a number
if [ ${#pos[@]} -gt 0 ]; then
  case ${pos[0]} in
    none|split|three|[0-9]*) ;;
    *) BIN=${pos[0]}; pos=("${pos[@]:1}") ;;
  esac
fi
MODE=${pos[0]:-three}; SECS=${pos[1]:-10}; REPS=${pos[2]:-3}
[ ${#pos[@]} -le 3 ] || usage
case $MODE in none|split|three) ;; *) echo "compare.sh: unknown MODE '$MODE' (none|split|three)" >&2; exit 2 ;; esac
[[ $SECS =~ ^[0-9]+$ && $REPS =~ ^[0-9]+$ && $SECS -ge 1 && $REPS -ge 1 ]] || { echo "compare.sh: SECS and REPS must be positive integers" >&2; exit 2; }
if [ -z "$BIN" ]; then
  BIN=$ROOT/target/release/jwtgate
elif [[ $BIN != /* ]]; then   # relative: to the current directory, else to the repo root
  if [ -e "$PWD/$BIN" ] || [ ! -e "$ROOT/$BIN" ]; then BIN=$PWD/$BIN; else BIN=$ROOT/$BIN; fi
fi

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# one run at a time: overlapping runs would share CPUs, ports and results.tsv rows
mkdir -p "$L/bench"
exec 9> "$L/bench/.compare.lock"
flock -n 9 || die "another compare.sh run is in progress (lock $L/bench/.compare.lock)"

# ---------- peer lab ----------
lab() { bash "$PEERS/lab.sh" "$1"; }
if [ ! -d "$L/tokens" ] || [ ! -f "$L/tokens/hs256_valid.jwt" ]; then
  log "peer lab not set up: running lab.sh install, keys, configs, start (needs root for apt-get)"
  for step in install keys configs start; do lab "$step" || die "lab.sh $step failed"; done
fi
tok_exp() { # prints the exp claim of a token file
  python3 - "$1" <<'EOF_PY'
import base64, json, sys
p = open(sys.argv[1]).read().strip().split(".")[1]
print(int(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))).get("exp", 0)))
EOF_PY
}
# tokens are valid 24 h; refresh them if they would expire during this run (keys are reused, peers need no restart)
if [ $(( $(tok_exp "$L/tokens/hs256_valid.jwt") - $(date +%s) )) -lt 3600 ]; then
  log "lab tokens expire within an hour: lab.sh keys"
  lab keys || die "lab.sh keys failed"
fi
if [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ || true)" != 200 ]; then
  log "nginx upstream on 127.0.0.1:8080 is not answering: lab.sh start"
  lab start || die "lab.sh start failed (if some peers are still running: bash $PEERS/lab.sh stop, then retry)"
fi
if [ ! -f "$L/keys/hs256.secret" ] || [ ! -f "$L/www/jwks.json" ]; then die "lab keys missing: bash $PEERS/lab.sh keys"; fi

# ---------- what the lab tokens carry (iss / aud drive the issuer config) ----------
claims_of() { # claims_of ALG -> "ISS<TAB>AUD1,AUD2"
  python3 - "$L/tokens/${1}_valid.jwt" <<'EOF_PY'
import base64, json, sys
p = open(sys.argv[1]).read().strip().split(".")[1]
c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
aud = c.get("aud", [])
aud = [aud] if isinstance(aud, str) else aud
print(c.get("iss", "") + "\t" + ",".join(aud))
EOF_PY
}

toml_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
toml_list() { # comma-separated -> ["a", "b"]
  local out="" x IFS=,
  for x in $1; do out+="${out:+, }$(toml_str "$x")"; done
  printf '[%s]' "$out"
}

# name port token-alg kind cache   (kind: hs256 | rs256 | es256, with -jwks for jwks_uri)
instances=(
  "jwtgate-hs256 8101 hs256 hs256 on"
  "jwtgate-hs256-nocache 8111 hs256 hs256 off"
  "jwtgate-rs256 8102 rs256 rs256 on"
  "jwtgate-rs256-nocache 8112 rs256 rs256 off"
  "jwtgate-es256 8103 es256 es256 on"
  "jwtgate-es256-nocache 8113 es256 es256 off"
)
if [ "${JWKS_URI:-0}" = 1 ]; then
  instances+=("jwtgate-rs256-jwks 8122 rs256 rs256-jwks on" "jwtgate-es256-jwks 8123 es256 es256-jwks on"
              "jwtgate-rs256-jwks-nocache 8132 rs256 rs256-jwks off" "jwtgate-es256-jwks-nocache 8133 es256 es256-jwks off")
fi
selected=()
for i in "${instances[@]}"; do
  n=${i%% *}
  if [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $n "* ]]; then selected+=("$i"); fi
done
if [ "${JWKS_URI:-0}" != 1 ]; then
  for w in ${ONLY:-}; do
    case $w in jwtgate-*-jwks|jwtgate-*-jwks-nocache) log "WARNING: $w needs JWKS_URI=1; it is not started" ;; esac
  done
fi

write_conf() { # write_conf NAME PORT KIND CACHE -> path of the config
  local name=$1 port=$2 kind=$3 cache=$4 f=$J/$1.toml alg iss aud
  {
    echo "# written by bench/compare.sh for the peer-lab comparison; regenerated on every run"
    echo "listen = \"127.0.0.1:$port\""
    echo 'admin_listen = ""'
    echo 'drain_timeout = "2s"'
    echo
    echo '[upstream]'
    echo 'url = "http://127.0.0.1:8080"'
    echo
    echo '[auth]'
    if [ "$cache" = off ]; then echo 'token_cache = 0'; else echo 'token_cache = 10000'; fi
    echo
    case $kind in
      hs256)
        # same bytes as HAProxy's JWT_HS_SECRET=$(cat keys/hs256.secret): raw text, trailing newline dropped
        echo '[auth.secret]'
        echo "value = $(toml_str "$(cat "$L/keys/hs256.secret")")"
        echo 'algorithms = ["HS256"]'
        ;;
      rs256*|es256*)
        alg=${kind%%-*}; alg=${alg^^}
        IFS=$'\t' read -r iss aud < <(claims_of "${kind%%-*}")
        [ -n "$iss" ] || die "the lab's ${kind%%-*} token has no iss claim: an [[auth.issuers]] entry cannot match it"
        echo '[[auth.issuers]]'
        echo "issuer = $(toml_str "$iss")"
        if [[ $kind == *-jwks ]]; then
          # The lab's own https server (8443) presents a self-signed CA
          # certificate as its server certificate, which rustls/webpki refuse
          # (CaUsedAsEndEntity) while OpenSSL-based Apache accepts it; jwtgate
          # fetches the same www/jwks.json from a twin server on 8444 with a
          # CA-signed leaf certificate (see start_jwks_https below).
          echo 'jwks_uri = "https://127.0.0.1:8444/jwks.json"'
          echo "ca_file = $(toml_str "$JT/keys/ca.pem")"
        else
          echo "jwks_file = $(toml_str "$L/www/jwks.json")"
        fi
        echo "algorithms = [\"$alg\"]"
        [ -z "$aud" ] || echo "audiences = $(toml_list "$aud")"
        ;;
      *) die "internal: unknown kind $kind" ;;
    esac
  } > "$f"
  echo "$f"
}

# ---------- start jwtgate instances ----------
started_pids=()
started_pidfiles=()
bench_pid=""
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
cleanup() {
  local rc=$? p alive
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then   # interrupted mid-run: stop bench.sh and its wrk
    log "interrupted: stopping bench.sh"
    for p in $(descendants "$bench_pid") "$bench_pid"; do kill -TERM "$p" 2>/dev/null || true; done
  fi
  if [ ${#started_pids[@]} -gt 0 ]; then
    log "stopping ${#started_pids[@]} jwtgate instance(s)"
    for p in "${started_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
      alive=0; for p in "${started_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break; sleep 0.1
    done
    for p in "${started_pids[@]}"; do kill -KILL "$p" 2>/dev/null && log "jwtgate pid $p ignored SIGTERM for 5 s: killed"; done
    for p in "${started_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "${started_pidfiles[@]}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------- the JWKS over https for the -jwks instances (JWKS_URI=1) ----------
JT=$L/jwtgate-jwks
start_jwks_https() {
  mkdir -p "$JT/keys"
  if [ ! -f "$JT/keys/jwks_tls_cert.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=jwtgate-bench-ca -keyout "$JT/keys/ca.key" -out "$JT/keys/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout "$JT/keys/jwks_tls_key.pem" -out "$JT/keys/leaf.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$JT/keys/leaf.ext"
    openssl x509 -req -in "$JT/keys/leaf.csr" -CA "$JT/keys/ca.pem" -CAkey "$JT/keys/ca.key" -CAcreateserial \
      -days 3650 -extfile "$JT/keys/leaf.ext" -out "$JT/keys/jwks_tls_cert.pem" 2>/dev/null \
      || die "could not make the JWKS server certificate"
  fi
  cp "$PEERS/serve_jwks.py" "$JT/serve_jwks.py"   # it reads keys/ beside itself
  python3 "$JT/serve_jwks.py" 8444 "$L/www" > "$L/logs/jwtgate-jwks-https.log" 2>&1 &
  started_pids+=("$!")
  for _ in $(seq 50); do
    curl -s -o /dev/null --cacert "$JT/keys/ca.pem" https://127.0.0.1:8444/jwks.json && return 0
    sleep 0.1
  done
  die "the JWKS https server on 8444 did not come up (see $L/logs/jwtgate-jwks-https.log)"
}
if [ "${JWKS_URI:-0}" = 1 ]; then start_jwks_https; fi

extra_targets=""
extra_pidfiles=""
failed=()
if [ ${#selected[@]} -gt 0 ]; then
  [ -x "$BIN" ] || die "jwtgate binary not found or not executable: $BIN (build it first; this script never builds)"
  help=$(timeout 5 "$BIN" --help 2>&1 || true)
  [[ $help == *serve* ]] || die "$BIN --help shows no 'serve' command (an unfinished build?)"
  mkdir -p "$J" "$L/run" "$L/logs"
  for i in "${selected[@]}"; do
    read -r name port alg kind cache <<< "$i"
    pf=$L/run/$name.pid
    if [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then
      die "$name already running (pid $(cat "$pf"), $pf): stop it first"
    fi
    if ss -Hltn "sport = :$port" | grep -q .; then die "127.0.0.1:$port is already in use (for $name)"; fi
    conf=$(write_conf "$name" "$port" "$kind" "$cache")
    envs=(PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn)
    [ -z "${TOKIO_WORKER_THREADS:-}" ] || envs+=(TOKIO_WORKER_THREADS="$TOKIO_WORKER_THREADS")
    [ -z "${JWTGATE_WORKER_THREADS:-}" ] || envs+=(JWTGATE_WORKER_THREADS="$JWTGATE_WORKER_THREADS")
    # clean environment: no JWTGATE_* / TOKENS_SECRET / AMPHO_* from the caller can change the config
    env -i "${envs[@]}" "$BIN" serve --config "$conf" > "$L/logs/$name.log" 2>&1 < /dev/null 9>&- &
    pid=$!
    echo "$pid" > "$pf"
    started_pids+=("$pid"); started_pidfiles+=("$pf")
    log "started $name pid $pid on 127.0.0.1:$port ($conf)"
  done

  # ---------- wait for a 200 on a valid token (bounded ~10 s overall) ----------
  deadline=$(( $(date +%s) + 10 ))
  ok_instances=()
  for i in "${selected[@]}"; do
    read -r name port alg kind cache <<< "$i"
    pid=$(cat "$L/run/$name.pid"); tok=$(cat "$L/tokens/${alg}_valid.jwt"); code=000
    while :; do
      code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/" || true)
      [ "$code" = 200 ] && break
      kill -0 "$pid" 2>/dev/null || { code="exited"; break; }
      [ "$(date +%s)" -lt "$deadline" ] || break
      sleep 0.2
    done
    if [ "$code" = 200 ]; then
      ok_instances+=("$i")
      extra_targets+="${extra_targets:+;}$name $port $alg"
      extra_pidfiles+="${extra_pidfiles:+ }$L/run/$name.pid"
    else
      failed+=("$name")
      log "FAILED $name: valid $alg token got '$code' on 127.0.0.1:$port; last log lines ($L/logs/$name.log):"
      tail -n 15 "$L/logs/$name.log" >&2 || true
      log "check-config says:"
      env -i PATH="$PATH" RUST_LOG=warn "$BIN" check-config --config "$J/$name.toml" 2>&1 | tail -n 15 >&2 || true
    fi
  done

  # ---------- correctness matrix (same as the peers': valid 200, everything else 401) ----------
  if [ "${CHECK:-1}" != 0 ]; then
    for i in "${ok_instances[@]}"; do
      read -r name port alg kind cache <<< "$i"
      bash "$PEERS/check.sh" "$name" "$port" "$alg" >&2 || log "WARNING: $name differs from the expected 200/401 matrix (above)"
    done
  fi
fi

# ---------- run the benchmark ----------
mkdir -p "$L/bench"
if [ -f "$RESULTS" ]; then start_line=$(wc -l < "$RESULTS"); else start_line=1; fi   # bench.sh writes a header line first
run_started=$(date -u '+%Y-%m-%d %H:%M UTC')
run_log=$L/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).log
log "bench.sh $MODE $SECS $REPS${CONNS:+ $CONNS} ${ONLY:+(ONLY=$ONLY)} -> $RESULTS (rows after line $start_line)"
bench_env=(EXTRA_TARGETS="$extra_targets" EXTRA_PIDFILES="$extra_pidfiles")
[ -z "${ONLY:-}" ] || bench_env+=(ONLY="$ONLY")
# in the background + wait, so that a TERM/INT to this script is handled at once (the trap stops bench.sh and wrk too)
( (cd "$L" && exec env "${bench_env[@]}" bash "$PEERS/bench.sh" "$MODE" "$SECS" "$REPS" ${CONNS:+"$CONNS"}) 2>&1 | tee "$run_log" ) &
bench_pid=$!
wait "$bench_pid" || log "bench.sh pipeline exited with status $?"
bench_pid=""

# ---------- summary of THIS run only ----------
bin_version=""
if [ ${#selected[@]} -gt 0 ]; then bin_version=$("$BIN" --version 2>/dev/null | head -n 1 || true); fi
summary=$L/bench/summary-$(date -u +%Y%m%dT%H%M%SZ).md
python3 - "$RESULTS" "$start_line" "$MODE" "$SECS" "$REPS" "${CONNS:-32}" "$run_started" "${bin_version:-}" > "$summary" <<'EOF_PY'
import sys, statistics
path, start, mode, secs, reps, conns, started, version = sys.argv[1:9]
start = int(start)
def us(s):
    for suf, f in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * f
    return float("nan")
def fmt_lat(v):
    if v != v: return "—"
    if v < 1000: return f"{v:.0f} µs"
    if v < 1e6: return f"{v / 1e3:.2f} ms"
    return f"{v / 1e6:.2f} s"
rows = {}
with open(path) as f:
    for n, line in enumerate(f, 1):
        if n <= start: continue
        c = line.rstrip("\n").split("\t")
        if len(c) < 8 or c[0] == "mode": continue
        r = rows.setdefault(c[1], {"rps": [], "p50": [], "p99": [], "n2": 0})
        try: r["rps"].append(float(c[3]))
        except ValueError: pass
        r["p50"].append(us(c[5])); r["p99"].append(us(c[6]))
        try: r["n2"] += int(c[7])
        except ValueError: pass
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"Run of {started}: mode `{mode}`, wrk -t1 -c{conns}, {secs} s × {reps}, median of the repetitions"
      + (f"; {version}" if version else "") + ".")
print()
print("| target | req/s | p50 | p99 | non-2xx |")
print("|---|---:|---:|---:|---:|")
for name, r in rows.items():
    rps = med(r["rps"])
    print(f"| {name} | {rps:,.0f} | {fmt_lat(med(r['p50']))} | {fmt_lat(med(r['p99']))} | {r['n2']} |"
          if rps == rps else f"| {name} | — | — | — | {r['n2']} |")
if not rows:
    print("| (no rows: every target was skipped) | | | | |")
EOF_PY
echo
cat "$summary"
skipped=$(grep '^SKIP' "$run_log" || true)
[ -z "$skipped" ] || { echo; echo "Skipped by bench.sh (probe was not 200):"; while IFS= read -r l; do echo "- $l"; done <<< "$skipped"; }
[ ${#failed[@]} -eq 0 ] || { echo; echo "jwtgate instances that did not come up (not measured): ${failed[*]}"; }
echo
log "summary also in $summary; wrk outputs in $L/bench/wrk-$MODE-*.txt"
[ ${#failed[@]} -eq 0 ]
