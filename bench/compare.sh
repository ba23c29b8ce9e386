#!/usr/bin/env bash
# compare.sh — benchmark jwtgate beside the peer lab (HAProxy jwt_verify, Apache mod_auth_openidc), like for like.
#
# usage: bench/compare.sh [--bin PATH | PATH] [WHAT] [MODE] [SECS] [REPS]
#   PATH  jwtgate binary (default: target/release/jwtgate under the repo root; also env JWTGATE_BIN).
#         Never built here: build it yourself first.
#   WHAT  at most one of these (default: wrk throughput of every target, p50/p99, ratios to haproxy-plain; the
#         targets include haproxy-hs256-full, the lab's like-for-like HAProxy frontend on 8085):
#     --mem          RSS of jwtgate-hs256 and a fresh HAProxy HS256: idle, under wrk -t2 -c1000 and -c4000,
#                    10 s after the load; ratios and the goals (bench/mem.sh is this)
#     --rate[=RATE]  fixed-rate latency with oha: p50/p99 at RATE req/s (default: half of haproxy-plain's peak,
#                    measured first with wrk in the same run)
#     --h2[=N]       HTTP/2 clients: h2load -c8 -m16 -nN (default 500000), HAProxy `proto h2` vs jwtgate,
#                    HTTP/1.1 upstream and h2c upstream, and the h2c backend direct
#     --two-cores    jwtgate worker_threads 2 vs HAProxy nbthread 2 (a second HAProxy from the lab's config on
#                    8181-8184), MODE none
#     --revocation   RS256 cached/uncached without a store vs with a Redis store holding 10,000 revocations
#     --session      a browser session cookie vs a cached HS256 bearer token on one jwtgate instance
#                    (bench/session.sh, after this script has made sure the lab is up), MODE three
#   MODE  none | split | three (default three; none for --mem and --two-cores, which run unpinned)
#   SECS  seconds per wrk/oha run (default 10; bench.sh caps wrk at 15, --mem and --rate take up to 60; --h2 ignores it)
#   REPS  repetitions per target (default 3; the summaries report medians; --mem measures once)
# env:
#   ONLY="a b"     run only the named targets (peers and/or jwtgate-*); jwtgate instances not named are not started
#                  (--two-cores, --rate, --h2: replaces their default list; --revocation: added to its four; --mem: ignored)
#   JWKS_URI=1     also start jwtgate-rs256-jwks (:8122) and jwtgate-es256-jwks (:8123), keys over https://127.0.0.1:8444
#                  (the lab's www/jwks.json, served with a CA-signed certificate; see start_jwks_https),
#                  and their -nocache twins (:8132, :8133)
#   CONNS=N        wrk (and oha) connections (default 32, as in bench.sh)
#   CHECK=0        skip the curl correctness matrix (check.sh) on the jwtgate instances
#   TOKIO_WORKER_THREADS=N   passed through to jwtgate if set
#   JWTGATE_WORKER_THREADS=N passed through to jwtgate if set (1 = single-threaded runtime; --mem defaults it to 1,
#                            --two-cores to 2); these two are the only variables passed besides PATH, HOME, RUST_LOG
#   HAPROXY_NBTHREAD=N       threads of the HAProxy this script starts (--two-cores: default 2; --mem, --h2: default 1)
#   OHA=PATH       the oha binary (default: oha on PATH, else ~/.cargo/bin/oha)
#   REDIS_PORT=P   loopback port for --revocation's redis-server (default: a free one)
#   H2C_BACKEND=nginx|nghttpd   --h2's h2c backend on 8180 (default nginx: bench/nginx-h2c.conf; nghttpd: nghttp2-server)
# Everything listens on and targets 127.0.0.1 only. Working directory: /tmp/peerlab (see ../shared/peers/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$(cd "$ROOT/../shared/peers" && pwd)
L=/tmp/peerlab
J=$L/jwtgate
RESULTS=$L/bench/results.tsv

usage() { awk 'NR > 1 && /^set -euo pipefail/ { exit } NR > 1' "$0"; exit 2; }
log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---------- arguments ----------
BIN=${JWTGATE_BIN:-}
WHAT=bench
RATE=""
H2_N=""
pos=()
set_what() {
  [ "$WHAT" = bench ] || { echo "compare.sh: give at most one of --mem, --rate, --h2, --two-cores, --revocation, --session" >&2; exit 2; }
  WHAT=$1
}
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage ;;
    --bin) [ $# -ge 2 ] || usage; BIN=$2; shift 2 ;;
    --bin=*) BIN=${1#--bin=}; shift ;;
    --mem) set_what mem; shift ;;
    --rate) set_what rate; shift ;;
    --rate=*) set_what rate; RATE=${1#--rate=}; shift ;;
    --h2) set_what h2; shift ;;
    --h2=*) set_what h2; H2_N=${1#--h2=}; shift ;;
    --two-cores) set_what two-cores; shift ;;
    --revocation) set_what revocation; shift ;;
    --session) set_what session; shift ;;
    -*) echo "compare.sh: unknown option $1" >&2; usage ;;
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
case $WHAT in mem|two-cores) default_mode=none ;; *) default_mode=three ;; esac
MODE=${pos[0]:-$default_mode}; SECS=${pos[1]:-10}; REPS=${pos[2]:-3}
[ ${#pos[@]} -le 3 ] || usage
case $MODE in none|split|three) ;; *) echo "compare.sh: unknown MODE '$MODE' (none|split|three)" >&2; exit 2 ;; esac
[[ $SECS =~ ^[0-9]+$ && $REPS =~ ^[0-9]+$ && $SECS -ge 1 && $REPS -ge 1 ]] || { echo "compare.sh: SECS and REPS must be positive integers" >&2; exit 2; }
case $WHAT in
  two-cores) [ "$MODE" = none ] || { echo "compare.sh: --two-cores runs everything on both CPUs: MODE none (not $MODE)" >&2; exit 2; } ;;
  session) [ "$MODE" = three ] || { echo "compare.sh: --session pins like mode three (not $MODE)" >&2; exit 2; }
           [ "$SECS" -le 15 ] || { echo "compare.sh: --session takes SECS <= 15" >&2; exit 2; } ;;
  mem|rate) [ "$SECS" -le 60 ] || { echo "compare.sh: --$WHAT takes SECS <= 60" >&2; exit 2; } ;;
esac
[ -z "$RATE" ] || [[ $RATE =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rate=RATE must be a positive integer (req/s)" >&2; exit 2; }
[ -z "$H2_N" ] || [[ $H2_N =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --h2=N must be a positive integer (requests per run)" >&2; exit 2; }
H2_N=${H2_N:-500000}
if [ -z "$BIN" ]; then
  BIN=$ROOT/target/release/jwtgate
elif [[ $BIN != /* ]]; then   # relative: to the current directory, else to the repo root
  if [ -e "$PWD/$BIN" ] || [ ! -e "$ROOT/$BIN" ]; then BIN=$PWD/$BIN; else BIN=$ROOT/$BIN; fi
fi

# where the client, the upstream and the proxy under test run: the same table as bench.sh's
case $MODE in
  none)  WRK_CPU=0,1; PROXY_CPU=0,1; UP_CPU=0,1 ;;
  split) WRK_CPU=1;   PROXY_CPU=0;   UP_CPU=0 ;;
  three) WRK_CPU=0;   PROXY_CPU=1;   UP_CPU=0 ;;
esac

# ---------- tools the chosen measurement needs ----------
OHA_BIN=""
case $WHAT in
  rate)
    OHA_BIN=${OHA:-$(command -v oha || true)}
    [ -n "$OHA_BIN" ] || { [ -x "${HOME:-/root}/.cargo/bin/oha" ] && OHA_BIN=${HOME:-/root}/.cargo/bin/oha; } || true
    [ -n "$OHA_BIN" ] && [ -x "$OHA_BIN" ] || die "--rate needs oha (cargo install oha --locked; or OHA=/path/to/oha)"
    ;;
  h2) command -v h2load > /dev/null || die "--h2 needs h2load (Debian: nghttp2-client)"
      case ${H2C_BACKEND:-nginx} in
        nginx) command -v nginx > /dev/null || die "--h2 needs nginx" ;;
        nghttpd) command -v nghttpd > /dev/null || die "H2C_BACKEND=nghttpd needs nghttpd (Debian: apt-get install nghttp2-server)" ;;
        *) die "H2C_BACKEND must be nginx or nghttpd" ;;
      esac ;;
  revocation) command -v redis-server > /dev/null || die "--revocation needs redis-server (Debian: redis-server)" ;;
esac
# --mem: wrk -c4000 and jwtgate with 4,000 client plus up to 4,000 upstream sockets; children inherit the limit
if [ "$WHAT" = mem ]; then
  need_fds=8400
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $need_fds ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge $need_fds ]; then ulimit -n $need_fds
    else ulimit -n "$hard" 2>/dev/null || true; fi
    log "raised the open-file limit to $(ulimit -n) (4,000 connections need about $need_fds)"
  fi
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $need_fds ] \
    || die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is below the $need_fds that 4,000 connections need; raise it (ulimit -n) and retry"
fi

# one run at a time: overlapping runs would share CPUs, ports and results.tsv rows
mkdir -p "$L/bench"
exec 9> "$L/bench/.compare.lock"
flock -n 9 || die "another compare.sh run is in progress (lock $L/bench/.compare.lock)"

# ---------- peer lab ----------
lab() { bash "$PEERS/lab.sh" "$1" 9>&-; }   # 9>&-: the daemons it starts must not inherit the run lock
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

# name port token-alg kind cache opts   (kind: hs256 | rs256 | es256, with -jwks for jwks_uri;
#   opts: "-" or a comma list of admin=PORT (admin_listen on 127.0.0.1:PORT), store ([store] url = the Redis
#   this script starts), h2up (upstream h2c to the bench nginx on 8180))
# --session: one instance serving both credentials, its own script (the lab is up by now)
if [ "$WHAT" = session ]; then
  exec bash "$ROOT/bench/session.sh" --bin "$BIN" "$SECS" "$REPS"
fi
standard=(
  "jwtgate-hs256 8101 hs256 hs256 on -"
  "jwtgate-hs256-nocache 8111 hs256 hs256 off -"
  "jwtgate-rs256 8102 rs256 rs256 on -"
  "jwtgate-rs256-nocache 8112 rs256 rs256 off -"
  "jwtgate-es256 8103 es256 es256 on -"
  "jwtgate-es256-nocache 8113 es256 es256 off -"
)
if [ "${JWKS_URI:-0}" = 1 ]; then
  standard+=("jwtgate-rs256-jwks 8122 rs256 rs256-jwks on -" "jwtgate-es256-jwks 8123 es256 es256-jwks on -"
             "jwtgate-rs256-jwks-nocache 8132 rs256 rs256-jwks off -" "jwtgate-es256-jwks-nocache 8133 es256 es256-jwks off -")
fi
REV_N_JTI=5000
REV_N_USER=5000
case $WHAT in
  bench|two-cores|rate) instances=("${standard[@]}") ;;
  mem) instances=("jwtgate-hs256 8101 hs256 hs256 on -") ;;
  h2) instances=("jwtgate-hs256 8101 hs256 hs256 on -" "jwtgate-hs256-h2up 8107 hs256 hs256 on h2up") ;;
  revocation)
    # off and on interleaved, so that bench.sh measures each pair back to back; every one has an admin listener,
    # so the only difference within a pair is [store]
    instances=("jwtgate-rs256 8102 rs256 rs256 on admin=9902"
               "jwtgate-rs256-store 8142 rs256 rs256 on admin=9942,store"
               "jwtgate-rs256-nocache 8112 rs256 rs256 off admin=9912"
               "jwtgate-rs256-nocache-store 8152 rs256 rs256 off admin=9952,store")
    for i in "${standard[@]}"; do case ${i%% *} in jwtgate-rs256|jwtgate-rs256-nocache) ;; *) instances+=("$i") ;; esac; done
    ;;
esac
# the targets of this run: ONLY, or each measurement's own list
case $WHAT in
  bench) EFF_ONLY=${ONLY:-} ;;
  two-cores) EFF_ONLY=${ONLY:-"direct-upstream haproxy-nbt2-plain haproxy-nbt2-hs256 jwtgate-hs256 jwtgate-hs256-nocache"} ;;
  rate) EFF_ONLY=${ONLY:-"haproxy-plain jwtgate-hs256 jwtgate-rs256"} ;;
  h2) EFF_ONLY=${ONLY:-"h2c-backend-direct haproxy-h2-hs256 jwtgate-hs256 haproxy-h2-hs256-h2up jwtgate-hs256-h2up"} ;;
  revocation) EFF_ONLY="jwtgate-rs256 jwtgate-rs256-store jwtgate-rs256-nocache jwtgate-rs256-nocache-store${ONLY:+ $ONLY}" ;;
  mem) EFF_ONLY=jwtgate-hs256 ;;
esac
selected=()
for i in "${instances[@]}"; do
  n=${i%% *}
  if [ -z "$EFF_ONLY" ] || [[ " $EFF_ONLY " == *" $n "* ]]; then selected+=("$i"); fi
done
if [ "${JWKS_URI:-0}" != 1 ]; then
  for w in ${ONLY:-}; do
    case $w in jwtgate-*-jwks|jwtgate-*-jwks-nocache) log "WARNING: $w needs JWKS_URI=1; it is not started" ;; esac
  done
fi

REDIS_PORT=${REDIS_PORT:-}
write_conf() { # write_conf NAME PORT KIND CACHE OPTS -> path of the config
  local name=$1 port=$2 kind=$3 cache=$4 opts=$5 f=$J/$1.toml alg iss aud o admin="" store=0 h2up=0
  local -a optv
  IFS=, read -ra optv <<< "$opts"
  for o in "${optv[@]}"; do
    case $o in
      -|"") ;;
      admin=*) admin=${o#admin=} ;;
      store) store=1 ;;
      h2up) h2up=1 ;;
      *) die "internal: unknown instance option $o" ;;
    esac
  done
  {
    echo "# written by bench/compare.sh for the peer-lab comparison; regenerated on every run"
    echo "listen = \"127.0.0.1:$port\""
    if [ -n "$admin" ]; then echo "admin_listen = \"127.0.0.1:$admin\""; else echo 'admin_listen = ""'; fi
    echo 'drain_timeout = "2s"'
    echo
    echo '[upstream]'
    if [ $h2up = 1 ]; then
      echo 'url = "http://127.0.0.1:8180"   # bench/nginx-h2c.conf: cleartext HTTP/2 only'
      echo 'protocol = "h2c"'
    else
      echo 'url = "http://127.0.0.1:8080"'
    fi
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
    if [ $store = 1 ]; then
      [ -n "$REDIS_PORT" ] || die "internal: $name needs the Redis store, which is not started"
      echo
      echo '[store]'
      echo "url = \"redis://127.0.0.1:$REDIS_PORT\""
    fi
  } > "$f"
  echo "$f"
}

# ---------- processes this script starts, and stopping them ----------
started_pids=()
started_pidfiles=()
bench_pid=""    # bench.sh pipeline
client_pid=""   # a load generator run directly (wrk for --mem, oha, h2load)
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
cleanup() {
  local rc=$? p alive
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then   # interrupted mid-run: stop bench.sh and its wrk
    log "interrupted: stopping bench.sh"
    for p in $(descendants "$bench_pid") "$bench_pid"; do kill -TERM "$p" 2>/dev/null || true; done
  fi
  if [ -n "$client_pid" ] && kill -0 "$client_pid" 2>/dev/null; then
    log "interrupted: stopping the load generator"
    for p in $(descendants "$client_pid") "$client_pid"; do kill -TERM "$p" 2>/dev/null || true; done
  fi
  if [ ${#started_pids[@]} -gt 0 ]; then
    log "stopping ${#started_pids[@]} process(es) this run started (jwtgate instances and helpers)"
    for p in "${started_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
      alive=0; for p in "${started_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break; sleep 0.1
    done
    for p in "${started_pids[@]}"; do kill -KILL "$p" 2>/dev/null && log "pid $p ignored SIGTERM for 5 s: killed"; done
    for p in "${started_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "${started_pidfiles[@]}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { # port_free PORT WHAT
  if ss -Hltn "sport = :$1" | grep -q .; then die "127.0.0.1:$1 is already in use (for $2)"; fi
}
# spawn NAME [--hs-secret] [--nbthread N] CMD...: run CMD in the background (log $L/logs/NAME.log, pid in
# $L/run/NAME.pid), stopped at exit like the jwtgate instances. --hs-secret / --nbthread set JWT_HS_SECRET
# and HAPROXY_NBTHREAD for CMD only (the same variables lab.sh gives its HAProxy).
spawn() {
  local name=$1 hs=0 nbt="" pid
  shift
  while :; do
    case ${1:-} in
      --hs-secret) hs=1; shift ;;
      --nbthread) nbt=$2; shift 2 ;;
      *) break ;;
    esac
  done
  mkdir -p "$L/run" "$L/logs"
  (
    if [ $hs = 1 ]; then JWT_HS_SECRET=$(cat "$L/keys/hs256.secret"); export JWT_HS_SECRET; fi
    if [ -n "$nbt" ]; then export HAPROXY_NBTHREAD=$nbt; fi
    exec "$@"
  ) > "$L/logs/$name.log" 2>&1 < /dev/null 9>&- &
  pid=$!
  echo "$pid" > "$L/run/$name.pid"
  started_pids+=("$pid"); started_pidfiles+=("$L/run/$name.pid")
  log "started $name pid $pid: $*"
}
# wait_code CODE SECS CURL-ARGS...: until curl answers CODE (bounded); returns 1 on timeout
wait_code() {
  local want=$1 secs=$2 code="" end
  shift 2
  end=$(( $(date +%s) + secs ))
  while :; do
    code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' "$@" || true)
    [ "$code" = "$want" ] && return 0
    [ "$(date +%s)" -lt "$end" ] || { log "wanted $want from curl $*, got '$code'"; return 1; }
    sleep 0.2
  done
}
pid_of() { head -n 1 "$L/run/$1.pid"; }
rss_kb() { awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_of() { echo "$1"; descendants "$1"; }
pin() { # pin CPUS PID|PIDFILE: the process, all its threads and all descendants (like bench.sh)
  local cpus=$1 pid=$2 p
  if [ -f "$pid" ]; then pid=$(head -n 1 "$pid" 2>/dev/null) || return 0; fi
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  for p in $(tree_of "$pid"); do taskset -a -cp "$cpus" "$p" > /dev/null 2>&1 || true; done
}
pin_all() { # what bench.sh pins for MODE, plus every process this script started
  local pf
  pin "$UP_CPU" "$L/run/nginx-upstream.pid"
  pin "$PROXY_CPU" "$L/run/haproxy.pid"
  pin "$PROXY_CPU" "$L/run/apache.pid"
  for pf in "${started_pidfiles[@]}"; do
    case $pf in
      */bench-nginx-h2c.pid|*/bench-nghttpd.pid|*/bench-redis.pid) pin "$UP_CPU" "$pf" ;;   # upstream side, and the idle store
      *) pin "$PROXY_CPU" "$pf" ;;
    esac
  done
}

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

# ---------- a second HAProxy from the lab's own config (--two-cores: nbthread 2; --mem: a fresh process) ----------
# The lab's conf/haproxy.cfg verbatim, its four binds moved from 808N to 818N; the lab's HAProxy keeps running.
start_haproxy_copy() { # start_haproxy_copy NAME NBTHREAD
  local name=$1 nbt=$2 cfg=$L/conf/bench-$1.cfg p tok
  [ -f "$L/conf/haproxy.cfg" ] || die "no $L/conf/haproxy.cfg: bash $PEERS/lab.sh configs"
  for p in 8181 8182 8183 8184 8185; do port_free "$p" "the $name HAProxy"; done
  # 8081-8084, and 8085 (the like-for-like frontend) where the lab's config has it
  sed -E 's/^([[:space:]]*bind 127\.0\.0\.1:)808([1-5])([[:space:]]|$)/\1818\2\3/' "$L/conf/haproxy.cfg" > "$cfg"
  [ "$(grep -cE '^[[:space:]]*bind 127\.0\.0\.1:818[1-4]([[:space:]]|$)' "$cfg")" = 4 ] && ! grep -qE '^[[:space:]]*bind .*:808' "$cfg" \
    || die "the lab's haproxy.cfg does not have the four binds 8081-8084 this script moves (see $cfg)"
  ( JWT_HS_SECRET=$(cat "$L/keys/hs256.secret"); export JWT_HS_SECRET HAPROXY_NBTHREAD=$nbt; haproxy -c -q -f "$cfg" ) \
    || die "haproxy -c refused $cfg"
  spawn "bench-$name" --hs-secret --nbthread "$nbt" haproxy -db -f "$cfg"
  tok=$(cat "$L/tokens/hs256_valid.jwt")
  wait_code 200 10 http://127.0.0.1:8184/ && wait_code 200 5 -H "Authorization: Bearer $tok" http://127.0.0.1:8181/ \
    || { tail -n 5 "$L/logs/bench-$name.log" >&2; die "the $name HAProxy (8181-8184) did not come up"; }
  log "$name HAProxy (nbthread $nbt: $(ls "/proc/$(pid_of "bench-$name")/task" | wc -l) threads; the lab's config) on 8181 hs256, 8182 rs256, 8183 es256, 8184 plain"
}

# ---------- HTTP/2: the h2c backend and HAProxy with proto h2 frontends (--h2) ----------
H2C_BACKEND=${H2C_BACKEND:-nginx}
start_h2_peers() {
  local p tok
  tok=$(cat "$L/tokens/hs256_valid.jwt")
  for p in 8180 8185 8187; do port_free "$p" "the --h2 peers"; done
  case $H2C_BACKEND in
    nginx)
      : > "$L/logs/bench-nginx-h2c-error.log"   # this run's lines only (its 400 reasons are looked up below)
      nginx -t -q -e "$L/logs/bench-nginx-h2c-error.log" -c "$ROOT/bench/nginx-h2c.conf" 2>&1 | grep -v '^$' >&2 || true
      spawn bench-nginx-h2c nginx -e "$L/logs/bench-nginx-h2c-error.log" -c "$ROOT/bench/nginx-h2c.conf"
      ;;
    nghttpd)
      # nghttp2's server, one worker thread, serving the same "ok\n" as the lab's upstream on the two paths used
      # here: / (the load) and /anything (check.sh); nghttpd serves files, not "any path"
      mkdir -p "$L/www-h2c"; printf 'ok\n' > "$L/www-h2c/index.html"; printf 'ok\n' > "$L/www-h2c/anything"
      spawn bench-nghttpd nghttpd --no-tls -a 127.0.0.1 -n 1 -m 256 -d "$L/www-h2c" 8180
      ;;
  esac
  wait_code 200 10 --http2-prior-knowledge http://127.0.0.1:8180/ \
    || die "the h2c $H2C_BACKEND on 8180 did not answer HTTP/2 with prior knowledge (see $L/logs/bench-*$H2C_BACKEND*)"
  ( JWT_HS_SECRET=$(cat "$L/keys/hs256.secret"); export JWT_HS_SECRET HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-1}; haproxy -c -q -f "$ROOT/bench/haproxy-h2.cfg" ) \
    || die "haproxy -c refused bench/haproxy-h2.cfg"
  spawn bench-haproxy-h2 --hs-secret --nbthread "${HAPROXY_NBTHREAD:-1}" haproxy -db -f "$ROOT/bench/haproxy-h2.cfg"
  for p in 8185 8187; do
    wait_code 200 10 --http2-prior-knowledge -H "Authorization: Bearer $tok" "http://127.0.0.1:$p/" \
      || { tail -n 5 "$L/logs/bench-haproxy-h2.log" >&2; die "HAProxy proto h2 on $p did not answer 200"; }
  done
}

# ---------- Redis for the revocation store (--revocation) ----------
redis_ping() { # redis_ping PORT: PONG within a second?
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && IFS= read -r -t 1 r <&3 && [[ $r == +PONG* ]]' _ "$1" 2>/dev/null
}
start_redis() {
  if [ -z "$REDIS_PORT" ]; then
    REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  port_free "$REDIS_PORT" "redis-server"
  mkdir -p "$L/redis-bench"
  spawn bench-redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$L/redis-bench" --daemonize no
  for _ in $(seq 50); do redis_ping "$REDIS_PORT" && return 0; sleep 0.2; done
  tail -n 5 "$L/logs/bench-redis.log" >&2
  die "redis-server on 127.0.0.1:$REDIS_PORT did not answer PING"
}

# ---------- helpers for this measurement, before the jwtgate instances (which need them to answer 200) ----------
case $WHAT in
  mem) start_haproxy_copy fresh "${HAPROXY_NBTHREAD:-1}"
       export JWTGATE_WORKER_THREADS=${JWTGATE_WORKER_THREADS:-1} ;;
  two-cores) start_haproxy_copy nbt2 "${HAPROXY_NBTHREAD:-2}"
             export JWTGATE_WORKER_THREADS=${JWTGATE_WORKER_THREADS:-2} ;;
  h2) start_h2_peers ;;
  revocation) start_redis ;;
esac

# ---------- start jwtgate instances ----------
extra_targets=""
extra_pidfiles=""
failed=()
ok_instances=()
if [ ${#selected[@]} -gt 0 ]; then
  [ -x "$BIN" ] || die "jwtgate binary not found or not executable: $BIN (build it first; this script never builds)"
  help=$(timeout 5 "$BIN" --help 2>&1 || true)
  [[ $help == *serve* ]] || die "$BIN --help shows no 'serve' command (an unfinished build?)"
  mkdir -p "$J" "$L/run" "$L/logs"
  for i in "${selected[@]}"; do
    read -r name port alg kind cache opts <<< "$i"
    pf=$L/run/$name.pid
    if [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then
      die "$name already running (pid $(cat "$pf"), $pf): stop it first"
    fi
    port_free "$port" "$name"
    case ,$opts, in *,admin=*) a=${opts#*admin=}; port_free "${a%%,*}" "$name's admin listener" ;; esac
    conf=$(write_conf "$name" "$port" "$kind" "$cache" "$opts")
    envs=(PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn)
    [ -z "${TOKIO_WORKER_THREADS:-}" ] || envs+=(TOKIO_WORKER_THREADS="$TOKIO_WORKER_THREADS")
    [ -z "${JWTGATE_WORKER_THREADS:-}" ] || envs+=(JWTGATE_WORKER_THREADS="$JWTGATE_WORKER_THREADS")
    # clean environment: no JWTGATE_* / TOKENS_SECRET / AMPHO_* from the caller can change the config
    env -i "${envs[@]}" "$BIN" serve --config "$conf" > "$L/logs/$name.log" 2>&1 < /dev/null 9>&- &
    pid=$!
    echo "$pid" > "$pf"
    started_pids+=("$pid"); started_pidfiles+=("$pf")
    log "started $name pid $pid on 127.0.0.1:$port ($conf)${JWTGATE_WORKER_THREADS:+ JWTGATE_WORKER_THREADS=$JWTGATE_WORKER_THREADS}"
  done

  # ---------- wait for a 200 on a valid token (bounded ~10 s overall) ----------
  deadline=$(( $(date +%s) + 10 ))
  for i in "${selected[@]}"; do
    read -r name port alg kind cache opts <<< "$i"
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
      read -r name port alg kind cache opts <<< "$i"
      bash "$PEERS/check.sh" "$name" "$port" "$alg" >&2 || log "WARNING: $name differs from the expected 200/401 matrix (above)"
    done
  fi
fi
instance_up() { [[ " ${extra_targets//;/ ; } " == *" $1 "* ]]; }   # did jwtgate instance NAME answer 200?

# ---------- bench.sh (wrk) and the summary of the rows it added ----------
mkdir -p "$L/bench"
run_started=$(date -u '+%Y-%m-%d %H:%M UTC')
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bin_version=""
if [ ${#selected[@]} -gt 0 ]; then bin_version=$("$BIN" --version 2>/dev/null | head -n 1 || true); fi
run_log=""
start_line=1
run_bench() { # run_bench ONLY EXTRA_TARGETS EXTRA_PIDFILES: bench.sh MODE SECS REPS [CONNS]; sets start_line, run_log
  local only=$1 targets=$2 pidfiles=$3
  if [ -f "$RESULTS" ]; then start_line=$(wc -l < "$RESULTS"); else start_line=1; fi   # bench.sh writes a header line first
  run_log=$L/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).log
  log "bench.sh $MODE $SECS $REPS${CONNS:+ $CONNS} ${only:+(ONLY=$only)} -> $RESULTS (rows after line $start_line)"
  local bench_env=(EXTRA_TARGETS="$targets" EXTRA_PIDFILES="$pidfiles")
  [ -z "$only" ] || bench_env+=(ONLY="$only")
  # in the background + wait, so that a TERM/INT to this script is handled at once (the trap stops bench.sh and wrk too)
  ( (cd "$L" && exec env "${bench_env[@]}" bash "$PEERS/bench.sh" "$MODE" "$SECS" "$REPS" ${CONNS:+"$CONNS"}) 2>&1 | tee "$run_log" ) 9>&- &
  bench_pid=$!
  wait "$bench_pid" || log "bench.sh pipeline exited with status $?"
  bench_pid=""
}
# summarize TITLE BASELINE RATIOS > file: the markdown table of this run's rows (median req/s, p50, p99, non-2xx),
# columns against BASELINE when it ran, then one line per RATIOS entry "A/B" or "A/B>=GOAL" (req/s of A over B)
summarize() {
  python3 - "$RESULTS" "$start_line" "$MODE" "$SECS" "$REPS" "${CONNS:-32}" "$run_started" "${bin_version:-}" "$1" "$2" "$3" <<'EOF_PY'
import sys, statistics
path, start, mode, secs, reps, conns, started, version, title, base, ratios = sys.argv[1:12]
start = int(start)
def us(s):
    for suf, f in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if s.endswith(suf):
            try: return float(s[: -len(suf)]) * f
            except ValueError: return float("nan")
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
def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")
m = {k: (med(r["rps"]), med(r["p50"]), med(r["p99"])) for k, r in rows.items()}
has_base = base in m and m[base][0] == m[base][0]
print(f"Run of {started}: {title + ', ' if title else ''}mode `{mode}`, wrk -t1 -c{conns}, {secs} s × {reps}, median of the repetitions"
      + (f"; {version}" if version else "") + ".")
print()
if has_base:
    print(f"| target | req/s | p50 | p99 | non-2xx | req/s ÷ {base} | p99 ÷ {base} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
else:
    print("| target | req/s | p50 | p99 | non-2xx |")
    print("|---|---:|---:|---:|---:|")
def ratio(a, b):
    return f"{a / b:.2f}" if a == a and b == b and b > 0 else "—"
for name, r in rows.items():
    rps, p50, p99 = m[name]
    cells = ([f"{rps:,.0f}", fmt_lat(p50), fmt_lat(p99)] if rps == rps else ["—", "—", "—"]) + [str(r["n2"])]
    if has_base:
        cells += [ratio(rps, m[base][0]), ratio(p99, m[base][2])]
    print(f"| {name} | " + " | ".join(cells) + " |")
if not rows:
    print("| (no rows: every target was skipped) | | | | |")
lines = []
for spec in ratios.split():
    pair, _, goal = spec.partition(">=")
    a, _, b = pair.partition("/")
    if a in m and b in m and m[a][0] == m[a][0] and m[b][0] == m[b][0] and m[b][0] > 0:
        v = m[a][0] / m[b][0]
        g = f" (goal ≥ {goal}: {'met' if v >= float(goal) else 'NOT met'})" if goal else ""
        lines.append(f"- {a} ÷ {b}: req/s {v:.3f}{g}; p99 {ratio(m[a][2], m[b][2])}")
if lines:
    print()
    print("Ratios (same run):")
    print("\n".join(lines))
EOF_PY
}
finish_bench_summary() { # finish_bench_summary TITLE BASELINE RATIOS: print + save the table, skipped targets
  local summary=$L/bench/summary-$stamp.md skipped
  summarize "$1" "$2" "$3" > "$summary"
  echo
  cat "$summary"
  skipped=$(grep '^SKIP' "$run_log" || true)
  [ -z "$skipped" ] || { echo; echo "Skipped by bench.sh (probe was not 200):"; while IFS= read -r l; do echo "- $l"; done <<< "$skipped"; }
  log "summary also in $summary; wrk outputs in $L/bench/wrk-$MODE-*.txt"
}

# ---------- the measurements ----------
# peer targets outside bench.sh (oha, h2load): name port alg
peer_port() {
  case $1 in
    direct-upstream) echo "8080 hs256" ;; haproxy-plain) echo "8084 hs256" ;; haproxy-hs256) echo "8081 hs256" ;;
    haproxy-rs256) echo "8082 rs256" ;; haproxy-es256) echo "8083 es256" ;;
    apache-oidc-rs256-jwks) echo "8091 rs256" ;; apache-oidc-es256-jwks) echo "8091 es256" ;; apache-oidc-hs256) echo "8092 hs256" ;;
    *) return 1 ;;
  esac
}
jwtgate_port() { # jwtgate_port NAME -> "port alg" of an instance that came up
  local i n p a c o
  for i in "${ok_instances[@]}"; do read -r n p a c o <<< "$i"; [ "$n" = "$1" ] && { echo "$p $a"; return 0; }; done
  return 1
}

run_client() { # run_client OUTFILE CMD...: a load generator in the background (the traps stop it), output to OUTFILE
  local out=$1 rc=0
  shift
  "$@" > "$out" 2>&1 9>&- &
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  return $rc
}

# The lab's like-for-like HAProxy frontend (8085: fe_hs256's checks plus `option forwardfor` and X-Auth-User
# deleted, then set from the token's sub after jwt_verify), which bench.sh does not list itself.
LIKE_FOR_LIKE="haproxy-hs256-full 8085 hs256"
measure_default() {
  local t=$extra_targets
  if [ -z "$EFF_ONLY" ] || [[ " $EFF_ONLY " == *" haproxy-hs256-full "* ]]; then
    t="$LIKE_FOR_LIKE${t:+;$t}"
    # bench.sh keeps only ONLY's names: the extra target must be among them
    [ -z "$EFF_ONLY" ] || [[ " $EFF_ONLY " == *" haproxy-hs256-full "* ]] || EFF_ONLY="$EFF_ONLY haproxy-hs256-full"
  fi
  run_bench "$EFF_ONLY" "$t" "$extra_pidfiles"
  # The issue-20 goals: cached HS256/RS256 >= 0.95x the bare hop and >= 1.2x the like-for-like frontend,
  # uncached HS256 >= 1.1x HAProxy HS256.
  finish_bench_summary "" haproxy-plain "jwtgate-hs256/haproxy-plain>=0.95 jwtgate-rs256/haproxy-plain>=0.95 jwtgate-hs256/haproxy-hs256-full>=1.2 jwtgate-rs256/haproxy-hs256-full>=1.2 jwtgate-hs256/haproxy-hs256 jwtgate-hs256-nocache/haproxy-hs256>=1.1 jwtgate-rs256-nocache/haproxy-rs256 jwtgate-es256-nocache/haproxy-es256"
}

measure_two_cores() {
  local t="haproxy-nbt2-plain 8184 hs256;haproxy-nbt2-hs256 8181 hs256;haproxy-nbt2-rs256 8182 rs256;haproxy-nbt2-es256 8183 es256"
  run_bench "$EFF_ONLY" "$t${extra_targets:+;$extra_targets}" "$L/run/bench-nbt2.pid${extra_pidfiles:+ $extra_pidfiles}"
  finish_bench_summary "two cores: jwtgate worker_threads ${JWTGATE_WORKER_THREADS}, HAProxy (8181-8184) nbthread ${HAPROXY_NBTHREAD:-2}" \
    haproxy-nbt2-plain "jwtgate-hs256/haproxy-nbt2-plain jwtgate-hs256/haproxy-nbt2-hs256 jwtgate-hs256-nocache/haproxy-nbt2-hs256"
}

measure_revocation() {
  local s sn=(jwtgate-rs256-store jwtgate-rs256-nocache-store) n admin before=() after=() k i counts fill_admin=9942
  for n in jwtgate-rs256 jwtgate-rs256-store jwtgate-rs256-nocache jwtgate-rs256-nocache-store; do
    instance_up "$n" || die "$n did not come up: the revocation comparison needs all four"
  done
  for n in "${sn[@]}"; do before+=("$(rss_kb "$(pid_of "$n")")"); done
  log "loading $REV_N_JTI jti + $REV_N_USER user revocations through jwtgate-rs256-store's admin API (127.0.0.1:$fill_admin)"
  python3 - "$fill_admin" "$REV_N_JTI" "$REV_N_USER" >&2 <<'EOF_PY' || die "loading the revocations failed"
import http.client, json, sys, time
port, n_jti, n_user = map(int, sys.argv[1:4])
# none of these matches the lab tokens (sub "user-1", no jti)
bodies = [{"jti": f"bench-revoked-jti-{i:05d}"} for i in range(n_jti)] + \
         [{"user": f"bench-revoked-user-{i:05d}"} for i in range(n_user)]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
status = {}
t0 = t_last = time.monotonic()
for b in bodies:
    data = json.dumps(b)
    for attempt in (1, 2):
        try:
            conn.request("POST", "/revocations", body=data, headers={"content-type": "application/json"})
            r = conn.getresponse(); r.read()
            break
        except (http.client.HTTPException, OSError):
            conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            if attempt == 2: raise
    status[r.status] = status.get(r.status, 0) + 1
    done = sum(status.values())
    if done % 2000 == 0:   # the cost per POST as the set grows
        now = time.monotonic()
        print(f"  {done:>6} posted, {now - t0:6.1f} s; last 2000: {(now - t_last) / 2 :.2f} ms each", flush=True)
        t_last = now
print(f"  POST /revocations x{len(bodies)} in {time.monotonic() - t0:.1f} s: " +
      ", ".join(f"{k}: {v}" for k, v in sorted(status.items())))
if status.get(202):
    print("  202 means Redis was unreachable for those (applied locally only)")
sys.exit(0 if set(status) == {201} else 1)
EOF_PY
  # every store instance must see all of them (the second one through Redis pub/sub), the others none
  counts=""
  local deadline=$(( $(date +%s) + 15 ))
  while :; do
    counts=$(python3 - 9902 9942 9912 9952 <<'EOF_PY'
import http.client, json, sys
out = []
for port in sys.argv[1:]:
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        c.request("GET", "/revocations"); r = c.getresponse(); body = r.read()
        out.append(str(len(json.loads(body)["revocations"])) if r.status == 200 else f"HTTP{r.status}")
    except Exception as e:
        out.append("error")
print(" ".join(out))
EOF_PY
)
    read -r c_off c_on c_off_nc c_on_nc <<< "$counts"
    [ "$c_on" = $((REV_N_JTI + REV_N_USER)) ] && [ "$c_on_nc" = $((REV_N_JTI + REV_N_USER)) ] && break
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.2
  done
  log "GET /revocations: jwtgate-rs256 $c_off, jwtgate-rs256-store $c_on, jwtgate-rs256-nocache $c_off_nc, jwtgate-rs256-nocache-store $c_on_nc"
  [ "$c_on" = $((REV_N_JTI + REV_N_USER)) ] && [ "$c_on_nc" = $((REV_N_JTI + REV_N_USER)) ] \
    || die "the store instances do not report $((REV_N_JTI + REV_N_USER)) revocations within 15 s"
  [ "$c_off" = 0 ] && [ "$c_off_nc" = 0 ] || die "the instances without a store report revocations"
  sleep 1
  for n in "${sn[@]}"; do after+=("$(rss_kb "$(pid_of "$n")")"); done

  run_bench "$EFF_ONLY" "$extra_targets" "$extra_pidfiles"
  local summary=$L/bench/summary-$stamp.md
  {
    summarize "revocation store off vs Redis (127.0.0.1:$REDIS_PORT) with $((REV_N_JTI + REV_N_USER)) revocations ($REV_N_JTI jti + $REV_N_USER users, none matching)" \
      "" "jwtgate-rs256-store/jwtgate-rs256>=0.95 jwtgate-rs256-nocache-store/jwtgate-rs256-nocache>=0.95"
    echo
    echo "RSS of the store instances before and after loading the $((REV_N_JTI + REV_N_USER)) revocations (before the load test):"
    echo
    echo "| instance | RSS before | RSS after | difference |"
    echo "|---|---:|---:|---:|"
    for k in 0 1; do
      awk -v n="${sn[$k]}" -v a="${before[$k]}" -v b="${after[$k]}" \
        'BEGIN { printf "| %s | %.1f MB | %.1f MB | %+.1f MB |\n", n, a / 1024, b / 1024, (b - a) / 1024 }'
    done
  } > "$summary"
  echo; cat "$summary"
  skipped=$(grep '^SKIP' "$run_log" || true)
  [ -z "$skipped" ] || { echo; echo "Skipped by bench.sh (probe was not 200):"; while IFS= read -r l; do echo "- $l"; done <<< "$skipped"; }
  log "summary also in $summary; wrk outputs in $L/bench/wrk-$MODE-*.txt; redis log $L/logs/bench-redis.log"
}

measure_mem() {
  local tok jp hp who n port pid out max maxc r c key rps errs
  instance_up jwtgate-hs256 || die "jwtgate-hs256 did not come up"
  tok=$(cat "$L/tokens/hs256_valid.jwt")
  jp=$(pid_of jwtgate-hs256); hp=$(pid_of bench-fresh)
  pin_all
  log "open-file limits: this shell $(ulimit -n), jwtgate $(awk '/Max open files/ { print $4 }' "/proc/$jp/limits"), HAProxy $(awk '/Max open files/ { print $4 }' "/proc/$hp/limits")"
  declare -A R
  sleep 1
  R[j_idle]=$(rss_kb "$jp"); R[h_idle]=$(rss_kb "$hp")
  for n in 1000 4000; do
    for who in h j; do
      if [ $who = h ]; then port=8181; pid=$hp; else port=8101; pid=$jp; fi
      out=$L/bench/mem-wrk-$who-$n.txt
      taskset -c "$WRK_CPU" wrk -t2 -c$n -d"${SECS}s" --timeout 5s -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/" > "$out" 2>&1 9>&- &
      client_pid=$!
      max=0; maxc=0
      sleep 0.5
      while kill -0 "$client_pid" 2>/dev/null; do   # the peak while wrk holds the connections, sampled every 0.5 s
        r=$(rss_kb "$pid"); c=$(ss -Htn state established "( sport = :$port )" | wc -l)
        if [ "$r" -gt "$max" ]; then max=$r; maxc=$c; fi
        sleep 0.5
      done
      wait "$client_pid" || log "wrk -c$n against :$port exited with status $?"
      client_pid=""
      rps=$(awk '/^Requests\/sec/ { print $2 }' "$out"); errs=$(awk '/Socket errors/ { sub(/^.*Socket errors: */, ""); print }' "$out")
      R[${who}_$n]=$max; R[${who}_${n}_conns]=$maxc; R[${who}_${n}_rps]=${rps:-0}; R[${who}_${n}_errs]=${errs:-none}
      log "$([ $who = h ] && echo haproxy || echo jwtgate) -c$n: peak RSS $((max / 1024)) MB with $maxc connections established, ${rps:-?} req/s, socket errors: ${errs:-none}"
      sleep 1
    done
  done
  log "waiting 10 s after the load"
  sleep 10
  R[j_after]=$(rss_kb "$jp"); R[h_after]=$(rss_kb "$hp")
  local summary=$L/bench/mem-$stamp.md rc=0
  python3 - "$run_started" "${bin_version:-}" "$SECS" "$MODE" "${JWTGATE_WORKER_THREADS:-}" "${HAPROXY_NBTHREAD:-1}" \
    "${R[j_idle]}" "${R[h_idle]}" "${R[j_1000]}" "${R[h_1000]}" "${R[j_4000]}" "${R[h_4000]}" "${R[j_after]}" "${R[h_after]}" \
    "${R[j_1000_conns]}" "${R[h_1000_conns]}" "${R[j_4000_conns]}" "${R[h_4000_conns]}" \
    "${R[j_1000_rps]}" "${R[h_1000_rps]}" "${R[j_4000_rps]}" "${R[h_4000_rps]}" \
    "${R[j_1000_errs]}" "${R[h_1000_errs]}" "${R[j_4000_errs]}" "${R[h_4000_errs]}" > "$summary" <<'EOF_PY' || rc=$?
import sys
a = sys.argv[1:]
started, version, secs, mode, wt, nbt = a[:6]
ji, hi, j1, h1, j4, h4, ja, ha = (int(x) / 1024 for x in a[6:14])
jc1, hc1, jc4, hc4 = a[14:18]
jr1, hr1, jr4, hr4 = (float(x) for x in a[18:22])
je1, he1, je4, he4 = a[22:26]
r = lambda x, y: x / y if y > 0 else float("nan")
print(f"Run of {started}: RSS, jwtgate-hs256 (token cache on, worker_threads {wt or 'default'}) vs a fresh HAProxy HS256 "
      f"(the lab's config, nbthread {nbt}); wrk -t2 for {secs} s per load, peak of 0.5 s samples; mode `{mode}`"
      + (f"; {version}" if version else "") + ".")
print()
print("| RSS | jwtgate | HAProxy | jwtgate ÷ HAProxy | goal |")
print("|---|---:|---:|---:|---|")
ok = []
def row(label, j, h, goal, met):
    ok.append(met)
    print(f"| {label} | {j:.1f} MB | {h:.1f} MB | {r(j, h):.2f} | {goal}: {'met' if met else 'NOT met'} |")
row("idle", ji, hi, "jwtgate ≤ 8 MB", ji <= 8.0)
row(f"1,000 connections (established: {jc1} / {hc1})", j1, h1, "≤ 2× HAProxy (issue 20)", r(j1, h1) <= 2.0)
row(f"4,000 connections (established: {jc4} / {hc4})", j4, h4, "≤ 2× HAProxy (issue 20)", r(j4, h4) <= 2.0)
row("10 s after the load", ja, ha, f"jwtgate ≤ 2× its idle ({r(ja, ji):.2f}×)", r(ja, ji) <= 2.0)
print()
print(f"Load during the samples (wrk req/s, jwtgate / HAProxy): 1,000 conns {jr1:,.0f} / {hr1:,.0f}; "
      f"4,000 conns {jr4:,.0f} / {hr4:,.0f}. Socket errors: 1k {je1} / {he1}; 4k {je4} / {he4}.")
print()
print("Goals: " + ("all met." if all(ok) else "NOT all met."))
sys.exit(0 if all(ok) else 3)
EOF_PY
  echo; cat "$summary"
  log "summary also in $summary; wrk outputs in $L/bench/mem-wrk-*.txt"
  return $rc
}

rate_targets() { # "name port alg" per line, in the order of EFF_ONLY
  local t pa
  for t in $EFF_ONLY; do
    if pa=$(peer_port "$t"); then echo "$t $pa"
    elif pa=$(jwtgate_port "$t"); then echo "$t $pa"
    else log "WARNING: $t is not a target this measurement knows or did not come up: left out"; fi
  done
}
measure_rate() {
  local plain_med t name port alg tok rep out json_flag targets=() rate_src
  if [ -z "$RATE" ]; then
    local only="$EFF_ONLY"
    [[ " $only " == *" haproxy-plain "* ]] || only="haproxy-plain $only"
    run_bench "$only" "$extra_targets" "$extra_pidfiles"
    finish_bench_summary "peak throughput before the fixed-rate runs" haproxy-plain ""
    plain_med=$(python3 - "$RESULTS" "$start_line" <<'EOF_PY'
import sys, statistics
xs = []
for n, line in enumerate(open(sys.argv[1]), 1):
    c = line.rstrip("\n").split("\t")
    if n > int(sys.argv[2]) and len(c) >= 8 and c[1] == "haproxy-plain":
        try: xs.append(float(c[3]))
        except ValueError: pass
print(int(statistics.median(xs)) if xs else 0)
EOF_PY
)
    [ "$plain_med" -gt 0 ] || die "haproxy-plain was not measured: no default rate (give --rate=RATE)"
    RATE=$(( plain_med / 2 ))
    rate_src="half of haproxy-plain's median peak ($plain_med req/s) in this run"
  else
    rate_src="given"
  fi
  [ "$RATE" -ge 1 ] || die "rate $RATE is below 1 req/s"
  pin_all
  if "$OHA_BIN" --help 2>&1 | grep -q -- '--output-format'; then json_flag=(--output-format json)
  else json_flag=(-j); fi
  mapfile -t targets < <(rate_targets)
  [ ${#targets[@]} -gt 0 ] || die "no target to measure"
  log "oha at $RATE req/s ($rate_src), $SECS s × $REPS, -c${CONNS:-32}, latency correction on; client on CPU $WRK_CPU"
  for rep in $(seq "$REPS"); do          # repetitions round-robin over the targets
    for t in "${targets[@]}"; do
      read -r name port alg <<< "$t"
      tok=$(cat "$L/tokens/${alg}_valid.jwt")
      out=$L/bench/oha-$MODE-$name-$rep.json
      run_client "$out" timeout -k 5 $((SECS + 30)) taskset -c "$WRK_CPU" "$OHA_BIN" -z "${SECS}s" -q "$RATE" -c "${CONNS:-32}" \
        --latency-correction -w --no-tui "${json_flag[@]}" -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/" \
        || log "oha against $name exited with status $? (see $out)"
      printf '%s\t%s\t%s\n' "$name" "$rep" "$out" >> "$L/bench/oha-$stamp.list"
      sleep 1
    done
  done
  local summary=$L/bench/summary-$stamp-rate.md
  python3 - "$L/bench/oha-$stamp.list" "$RATE" "$rate_src" "$run_started" "$MODE" "$SECS" "$REPS" "${CONNS:-32}" "${bin_version:-}" > "$summary" <<'EOF_PY'
import json, statistics, sys
lst, rate, src, started, mode, secs, reps, conns, version = sys.argv[1:10]
runs = {}
for line in open(lst):
    name, rep, path = line.rstrip("\n").split("\t")
    r = runs.setdefault(name, {"rps": [], "p50": [], "p99": [], "p999": [], "non2xx": 0, "errors": 0, "bad": 0})
    try:
        d = json.load(open(path))
    except Exception:
        r["bad"] += 1
        continue
    s = d.get("summary", {})
    p = d.get("latencyPercentiles", {})
    r["rps"].append(s.get("requestsPerSec") or float("nan"))
    for k, key in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        v = p.get(key)
        r[k].append(v * 1e6 if isinstance(v, (int, float)) else float("nan"))
    for code, n in (d.get("statusCodeDistribution") or {}).items():
        if not str(code).startswith("2"): r["non2xx"] += n
    r["errors"] += sum((d.get("errorDistribution") or {}).values())
def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")
def lat(v):
    if v != v: return "—"
    if v < 1000: return f"{v:.0f} µs"
    if v < 1e6: return f"{v / 1e3:.2f} ms"
    return f"{v / 1e6:.2f} s"
print(f"Run of {started}: fixed rate {int(rate):,} req/s ({src}), oha -c{conns} --latency-correction, {secs} s × {reps} "
      f"(round-robin), mode `{mode}`, median of the repetitions" + (f"; {version}" if version else "") + ".")
print()
base = runs.get("haproxy-plain")
hb = base is not None and med(base["p99"]) == med(base["p99"])
print("| target | achieved req/s | p50 | p99 | p99.9 | non-2xx | errors |" + (" p99 ÷ haproxy-plain |" if hb else ""))
print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if hb else ""))
for name, r in runs.items():
    cells = [f"{med(r['rps']):,.0f}", lat(med(r["p50"])), lat(med(r["p99"])), lat(med(r["p999"])), str(r["non2xx"]), str(r["errors"])]
    if hb:
        b = med(base["p99"]); v = med(r["p99"])
        cells.append(f"{v / b:.2f}" if v == v and b > 0 else "—")
    print(f"| {name} | " + " | ".join(cells) + " |" + (f" ({r['bad']} unreadable oha outputs)" if r["bad"] else ""))
print()
print("Achieved req/s well below the rate means the target (or the client) could not keep up: its latencies are not at that rate.")
EOF_PY
  echo; cat "$summary"
  log "summary also in $summary; oha outputs in $L/bench/oha-$MODE-*.json"
}

measure_h2() {
  local t name port tok rep out targets=() timeout_s
  # name port what (all HS256)
  local all=("h2c-backend-direct 8180 the h2c $H2C_BACKEND itself"
             "haproxy-h2-hs256 8185 HAProxy proto h2 -> HTTP/1.1 nginx :8080"
             "jwtgate-hs256 8101 jwtgate -> HTTP/1.1 nginx :8080"
             "haproxy-h2-hs256-h2up 8187 HAProxy proto h2 -> h2c $H2C_BACKEND :8180 (server proto h2)"
             "jwtgate-hs256-h2up 8107 jwtgate -> h2c $H2C_BACKEND :8180 (upstream.protocol h2c)")
  tok=$(cat "$L/tokens/hs256_valid.jwt")
  for t in $EFF_ONLY; do
    local found=""
    for x in "${all[@]}"; do [ "${x%% *}" = "$t" ] && found=$x; done
    if [ -z "$found" ]; then log "WARNING: $t is not an --h2 target: left out"; continue; fi
    case $t in jwtgate-*) instance_up "$t" || { log "WARNING: $t did not come up: left out"; continue; } ;; esac
    targets+=("$found")
  done
  [ ${#targets[@]} -gt 0 ] || die "no --h2 target to measure"
  if [[ " ${failed[*]:-} " == *" jwtgate-hs256-h2up "* ]] && grep -q 'duplicate host header' "$L/logs/bench-nginx-h2c-error.log" 2>/dev/null; then
    log "jwtgate-hs256-h2up: nginx refused jwtgate's HTTP/2 requests with 400, 'client sent duplicate host header'"
    log "  (jwtgate sends a host header beside :authority over h2c; nginx 1.22 refuses any such request). Its log line:"
    grep -m 1 'duplicate host header' "$L/logs/bench-nginx-h2c-error.log" >&2 || true
    log "  To measure the h2c upstream anyway, use a backend that accepts it: H2C_BACKEND=nghttpd (apt-get install nghttp2-server)"
  fi
  # the same matrix as check.sh, but over HTTP/2 with prior knowledge (the proto h2 binds speak nothing else)
  if [ "${CHECK:-1}" != 0 ]; then
    local T=$L/tokens bad=0 exp got label
    for t in "${targets[@]}"; do
      read -r name port _ <<< "$t"
      [ "$name" = h2c-backend-direct ] && continue
      for label in "valid:200:$(cat $T/hs256_valid.jwt)" "missing::" "expired:401:$(cat $T/hs256_expired.jwt)" \
                   "badsig:401:$(cat $T/hs256_badsig.jwt)" "alg-none:401:$(cat $T/alg_none.jwt)" "confusion:401:$(cat $T/rs_hs_confusion.jwt)"; do
        IFS=: read -r what exp tk <<< "$label"; exp=${exp:-401}
        if [ -n "$tk" ]; then got=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{http_version}' --http2-prior-knowledge -H "Authorization: Bearer $tk" "http://127.0.0.1:$port/")
        else got=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{http_version}' --http2-prior-knowledge "http://127.0.0.1:$port/"); fi
        [ "$got" = "$exp 2" ] || { bad=1; log "h2 check $name $what: expected '$exp 2' (code, HTTP version), got '$got'"; }
      done
    done
    [ $bad = 0 ] && log "h2 matrix (valid 200; missing, expired, bad signature, alg=none, RS->HS 401; all over HTTP/2): OK on every target" \
      || log "WARNING: some --h2 targets differ from the expected matrix (above)"
  fi
  pin_all
  timeout_s=$(( 30 + H2_N / 1000 ))   # a run that falls below 1,000 req/s is cut
  log "h2load -c8 -m16 -n$H2_N × $REPS (round-robin), client on CPU $WRK_CPU, each run cut after ${timeout_s} s"
  for rep in $(seq "$REPS"); do
    for t in "${targets[@]}"; do
      read -r name port _ <<< "$t"
      out=$L/bench/h2load-$MODE-$name-$rep.txt
      run_client "$out" timeout -k 5 "$timeout_s" taskset -c "$WRK_CPU" h2load -c8 -m16 -n "$H2_N" \
        -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/" || log "h2load against $name exited with status $? (see $out)"
      printf '%s\t%s\t%s\n' "$name" "$rep" "$out" >> "$L/bench/h2load-$stamp.list"
      sleep 1
    done
  done
  local summary=$L/bench/summary-$stamp-h2.md descs=""
  for t in "${targets[@]}"; do descs+="$t"$'\n'; done
  python3 - "$L/bench/h2load-$stamp.list" "$H2_N" "$run_started" "$MODE" "$REPS" "${bin_version:-}" "$descs" > "$summary" <<'EOF_PY'
import re, statistics, sys
lst, n, started, mode, reps, version, descs = sys.argv[1:8]
what = {}
for l in descs.strip().splitlines():
    p = l.split(" ", 2)
    what[p[0]] = (p[1], p[2])
runs = {}
for line in open(lst):
    name, rep, path = line.rstrip("\n").split("\t")
    r = runs.setdefault(name, {"rps": [], "mean": [], "ok": 0, "non2xx": 0, "failed": 0, "done": 0})
    text = open(path, errors="replace").read()
    m = re.search(r"finished in [^,]+, ([0-9.]+) req/s", text)
    r["rps"].append(float(m.group(1)) if m else float("nan"))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        r["done"] += int(m.group(3)); r["failed"] += int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    else:
        r["failed"] += int(n)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        r["ok"] += int(m.group(1)); r["non2xx"] += int(m.group(2)) + int(m.group(3)) + int(m.group(4))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    def us(s):
        for suf, f in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
            if s.endswith(suf): return float(s[: -len(suf)]) * f
        return float("nan")
    r["mean"].append(us(m.group(3)) if m else float("nan"))
def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")
def lat(v):
    if v != v: return "—"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1e3:.2f} ms"
rps = {k: med(r["rps"]) for k, r in runs.items()}
print(f"Run of {started}: HTTP/2 clients, h2load -c8 -m16 -n{int(n):,} (cleartext, prior knowledge, HS256 token), × {reps} "
      f"(round-robin), mode `{mode}`, median of the repetitions" + (f"; {version}" if version else "") + ".")
print()
print("| target | path | req/s | mean time per request | non-2xx | failed/errored/timeout |")
print("|---|---|---:|---:|---:|---:|")
for k, r in runs.items():
    v = rps[k]
    print(f"| {k} | {what.get(k, ('', ''))[1]} | {v:,.0f} | {lat(med(r['mean']))} | {r['non2xx']} | {r['failed']} |" if v == v
          else f"| {k} | {what.get(k, ('', ''))[1]} | — | — | {r['non2xx']} | {r['failed']} |")
lines = []
for a, b in (("jwtgate-hs256", "haproxy-h2-hs256"), ("jwtgate-hs256-h2up", "haproxy-h2-hs256-h2up"),
             ("haproxy-h2-hs256-h2up", "h2c-backend-direct"), ("jwtgate-hs256-h2up", "h2c-backend-direct")):
    if rps.get(a, float("nan")) == rps.get(a, float("nan")) and rps.get(b, 0) == rps.get(b, 0) and rps.get(b, 0) > 0:
        lines.append(f"- {a} ÷ {b}: req/s {rps[a] / rps[b]:.3f}")
if lines:
    print()
    print("Ratios (same run):")
    print("\n".join(lines))
EOF_PY
  echo; cat "$summary"
  log "summary also in $summary; h2load outputs in $L/bench/h2load-$MODE-*.txt"
}

rc=0
case $WHAT in
  bench) measure_default ;;
  two-cores) measure_two_cores ;;
  revocation) measure_revocation ;;
  mem) measure_mem || rc=$? ;;
  rate) measure_rate ;;
  h2) measure_h2 ;;
esac
[ ${#failed[@]} -eq 0 ] || { echo; echo "jwtgate instances that did not come up (not measured): ${failed[*]}"; }
echo
[ ${#failed[@]} -eq 0 ] || exit 1
exit $rc
