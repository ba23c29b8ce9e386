#!/usr/bin/env bash
# mem.sh — RSS of jwtgate beside HAProxy: bench/compare.sh --mem (see bench/README.md, "Memory").
#
# usage: bench/mem.sh [--bin PATH | PATH] [MODE] [SECS]
#   jwtgate-hs256 (token cache on, worker_threads 1 unless JWTGATE_WORKER_THREADS is set) and a fresh HAProxy
#   HS256 started from the lab's config (nbthread 1, 127.0.0.1:8181): RSS idle, peak while wrk -t2 holds 1,000
#   and then 4,000 keep-alive connections for SECS seconds (default 10, at most 60), and 10 s after the load.
#   Prints the ratios and the goals (<= 1.5x HAProxy at 1k and 4k, idle <= 8 MB, after <= 2x idle).
#   MODE defaults to none (no pinning split). Exit status 0 when every goal is met, 3 when one is not,
#   1 or 2 on errors. Never builds; raises the open-file limit to 8,400 if the hard limit allows.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/compare.sh" --mem "$@"
