#!/usr/bin/env bash
# scripts/bench-origin.sh [DURATION_S=10] [ROUNDS=3]
#
# Benchmark (not a test): `abr serve` against nginx (Debian's package, sendfile on) serving the
# same ROOT with the same MIME types, Range behaviour and caching headers, loaded by wrk over
# loopback. Installs its own needs idempotently (apt packages nginx and wrk when missing, without
# starting the system nginx service), builds abr (cargo build --release --locked) and runs its
# own nginx instance (`nginx -c target/bench-origin/nginx/nginx.conf -p target/bench-origin/nginx`,
# master + WORKERS workers) and its own `abr serve --workers WORKERS` on loopback ports.
#
# Data (target/bench-origin/root, made once, deterministic):
#   bench/hls/720p/seg_00001.ts … seg_00200.ts   200 files of exactly 2 MiB (400 MiB, page cache)
#   sample/…   a real abr package of fixtures/make.sh 1080p30 (FIXTURE_S s): its master.m3u8,
#              media playlists and manifest.mpd are the manifests mix
#
# Mixes (wrk -t2 --latency --timeout 30s, Lua scripts in scripts/bench-origin/):
#   segments        GET a whole 2 MiB segment, random one of 200
#   ranges          GET Range: bytes=a-(a+262143), a uniform in the segment, random segment
#   manifests       GET a random manifest, no Accept-Encoding (identity bytes on both)
#   manifests-gzip  (only with GZIP_MIX=1) the same with Accept-Encoding: gzip
# each at 64 and 512 connections. Round r runs, for each mix and each connection count, nginx
# and abr back to back (nginx first in odd rounds, abr first in even rounds), each as a checked
# warm-up of WARMUP_S (a wrk `response` hook checks every status, length and Content-Range)
# followed by the measured run of DURATION_S (no response hook: wrk buffers bodies for it;
# measured runs are checked by wrk's error counters and bytes per response). Medians over rounds.
#
# Logging, the same for both by default: nginx `access_log off`, abr `--log warn,access=off`
# (no JSON access lines; warnings still go to its log file). ACCESS_LOG=1 turns both on, to
# files: nginx's default "combined" format, abr's JSON lines.
#
# Memory: VmRSS of abr (one process) and of nginx (master + workers) at idle before the first
# run, sampled every 0.5 s during every 512-connection run, and at idle after the last run.
#
# Output: a Markdown report (results with abr/nginx ratios and the targets, RSS, a curl behaviour
# comparison, every run, machine, exact commands) printed and written to
# target/bench-origin/results.md; raw wrk outputs in target/bench-origin/runs/.
#
# Environment: WARMUP_S=2 NGINX_PORT/ABR_PORT (default: first free from 18080/18180, below the ephemeral range) WORKERS=$(nproc)
#              FIXTURE_S=6 GZIP_MIX=0 ACCESS_LOG=0 CHECK_MEASURED=0 (1: response hook in measured
#              runs too) NGINX_REUSEPORT=0 (1: `listen … reuseport`) ABR_EXTRA_ARGS='' (more
#              `abr serve` flags, e.g. "--cache-bytes 268435456") MIXES='segments ranges manifests'
#              CONNS='64 512' (a subset, for a focused A/B); non-default values are reported.
#              PACED_ROUNDS=3 (0: none) PACED_FRACTION=0.5: after the rounds, paced runs at the
#              same request rate for both servers (PACED_FRACTION of the lower closed-loop median
#              req/s, by a per-request delay on every connection), to compare latency at equal
#              load; reported in their own table.
# Every process this script starts (nginx, abr, wrk, samplers) is stopped on exit and on error.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
HERE=$REPO/scripts/bench-origin

usage() { sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf '[bench-origin %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench-origin: %s\n' "$*" >&2; exit 1; }

[[ ${1:-} == -h || ${1:-} == --help ]] && usage
DUR=${1:-10}
ROUNDS=${2:-3}
[[ $DUR =~ ^[0-9]+$ && $DUR -ge 1 ]] || die "DURATION_S must be an integer >= 1"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be an integer >= 1"
WARMUP_S=${WARMUP_S:-2}
NGINX_PORT=${NGINX_PORT:-}
ABR_PORT=${ABR_PORT:-}
WORKERS=${WORKERS:-$(nproc)}
FIXTURE_S=${FIXTURE_S:-6}
GZIP_MIX=${GZIP_MIX:-0}
ACCESS_LOG=${ACCESS_LOG:-0}
CHECK_MEASURED=${CHECK_MEASURED:-0}
NGINX_REUSEPORT=${NGINX_REUSEPORT:-0}
ABR_EXTRA_ARGS=${ABR_EXTRA_ARGS:-}
PACED_ROUNDS=${PACED_ROUNDS:-3}
PACED_FRACTION=${PACED_FRACTION:-0.5}
[[ $PACED_ROUNDS =~ ^[0-9]+$ ]] || die "PACED_ROUNDS must be an integer >= 0"
[[ $PACED_FRACTION =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || die "PACED_FRACTION must be in (0, 1]"
read -r -a ABR_EXTRA <<<"$ABR_EXTRA_ARGS"
[[ $WARMUP_S =~ ^[0-9]+$ && $WARMUP_S -ge 1 ]] || die "WARMUP_S must be an integer >= 1"
[[ $WORKERS =~ ^[0-9]+$ && $WORKERS -ge 1 ]] || die "WORKERS must be an integer >= 1"

THREADS=2
read -r -a CONNS <<<"${CONNS:-64 512}"
read -r -a MIXES <<<"${MIXES:-segments ranges manifests}"
if [[ $GZIP_MIX == 1 ]]; then MIXES+=(manifests-gzip); fi
for c in "${CONNS[@]}"; do [[ $c =~ ^[0-9]+$ && $c -ge 1 ]] || die "CONNS: $c is not a connection count"; done
for m in "${MIXES[@]}"; do [[ $m =~ ^(segments|ranges|manifests|manifests-gzip)$ ]] || die "MIXES: unknown mix $m"; done
NSEG=200
SEGSIZE=2097152
RANGELEN=262144
SEGFMT=/bench/hls/720p/seg_%05d.ts
seg_path() { printf '/bench/hls/720p/seg_%05d.ts' "$1"; }

OUT=$REPO/target/bench-origin
ROOTDIR=$OUT/root
PREFIX=$OUT/nginx
LOGS=$OUT/logs
RAW=$OUT/runs
BIN=$OUT/bin

NGINX_PID='' ABR_PID='' WRK_PID='' SAMPLER_PID='' POLICY_CREATED='' NGINX_CHILDREN=''

# ---------------------------------------------------------------------------------------------
# Cleanup: stop exactly the processes started here, by pid.
stop_pid() { # NAME PID
  local name=$1 pid=$2 i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name ($pid) did not stop on SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $SAMPLER_PID ]] && { kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; }
  [[ -n $WRK_PID ]] && stop_pid wrk "$WRK_PID"
  stop_pid nginx "$NGINX_PID"
  # Workers normally exit with their master; any left (master killed) are ours too.
  local p
  for p in $NGINX_CHILDREN; do
    if [[ $(cat "/proc/$p/comm" 2>/dev/null) == nginx ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  stop_pid abr "$ABR_PID"
  if [[ -n $POLICY_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT" "$LOGS" "$RAW" "$BIN" "$PREFIX/tmp"
: >"$OUT/commands.md.tmp"
cmd() { # record a command (as run) for the report
  printf '%s\n' "$*" >>"$OUT/commands.md.tmp"
}

# ---------------------------------------------------------------------------------------------
# 1. Dependencies (idempotent): nginx and wrk from Debian, only when missing. The package's
# post-install would start the system nginx on port 80; a temporary policy-rc.d (exit 101)
# prevents that when none is present.
SUDO=''
[[ $(id -u) == 0 ]] || SUDO=sudo
NGINX=$(command -v nginx || true)
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
need=()
[[ -n $NGINX ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  log "installing ${need[*]} (apt)"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from scripts/bench-origin.sh: do not start services\nexit 101\n' |
      $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  cmd "apt-get install -y --no-install-recommends ${need[*]}   # with policy-rc.d denying service start"
  if [[ -n $POLICY_CREATED ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=''; fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[[ -x $NGINX ]] || die "nginx not found after install"
command -v wrk >/dev/null || die "wrk not found after install"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

# 512 connections per run, plus the servers' own descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 4096)) || die "open-file limit $(ulimit -n) is too low for 512 connections"

# ---------------------------------------------------------------------------------------------
# 2. abr (release), copied so that a concurrent rebuild cannot swap the binary mid-benchmark.
log "cargo build --release --locked"
cargo build --release --locked >&2
cmd "cargo build --release --locked"
cp -f target/release/abr "$BIN/abr"
ABR=$BIN/abr
ABR_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"

# ---------------------------------------------------------------------------------------------
# 3. ROOT: 200 deterministic 2 MiB segments, and a real package for its manifests.
log "data: $NSEG x $SEGSIZE-byte segments in $ROOTDIR/bench (made once)"
python3 - "$ROOTDIR" "$NSEG" "$SEGSIZE" <<'EOF'
import os, random, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = os.path.join(root, "bench", "hls", "720p")
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    p = os.path.join(d, f"seg_{i:05d}.ts")
    if not (os.path.isfile(p) and os.path.getsize(p) == size):
        tmp = os.path.join(d, f"tmp_{i:05d}")
        with open(tmp, "wb") as f:
            f.write(random.Random(i).randbytes(size))
        os.replace(tmp, p)
    os.utime(p, (1700000000, 1700000000))
EOF
cmd "python3 (inline): ROOT/bench/hls/720p/seg_NNNNN.ts = random.Random(N).randbytes($SEGSIZE), N = 1..$NSEG"

FIXTURE=$OUT/fixture-1080p30-${FIXTURE_S}s.mp4
bash fixtures/make.sh 1080p30 "$FIXTURE" "$FIXTURE_S" >/dev/null
cmd "bash fixtures/make.sh 1080p30 $FIXTURE $FIXTURE_S"
if [[ ! -f $ROOTDIR/sample/hls/master.m3u8 || ! -f $ROOTDIR/sample/dash/manifest.mpd || $FIXTURE -nt $ROOTDIR/sample/hls/master.m3u8 ]]; then
  log "packaging the fixture into $ROOTDIR/sample"
  "$ABR" package "$FIXTURE" --out "$ROOTDIR/sample" --force --progress none >&2
fi
cmd "$ABR package $FIXTURE --out $ROOTDIR/sample --force --progress none"
chmod -R a+rX "$ROOTDIR"
(cd "$ROOTDIR" && find sample -type f \( -name '*.m3u8' -o -name '*.mpd' \) -printf '/%p %s\n' | sort) >"$OUT/manifests.txt"
[[ -s $OUT/manifests.txt ]] || die "no manifests found under $ROOTDIR/sample"
read -r MAN_MIN MAN_MAX < <(awk 'NR==1{mn=$2;mx=$2} {if($2<mn)mn=$2; if($2>mx)mx=$2} END{print mn, mx}' "$OUT/manifests.txt")
{
  echo "segments $SEGSIZE $SEGSIZE"
  echo "ranges $RANGELEN $RANGELEN"
  echo "manifests $MAN_MIN $MAN_MAX"
  # gzip bodies are smaller than the files; 20 bytes is a floor for any gzip stream.
  if [[ $GZIP_MIX == 1 ]]; then echo "manifests-gzip 20 $MAN_MAX"; fi
} >"$OUT/mixes.txt"
# Warm the page cache (400 MiB): both servers then read from memory.
cat "$ROOTDIR"/bench/hls/720p/*.ts "$ROOTDIR"/sample/hls/*.m3u8 "$ROOTDIR"/sample/hls/*/*.m3u8 \
  "$ROOTDIR"/sample/dash/*.mpd >/dev/null

# ---------------------------------------------------------------------------------------------
# 4. Servers.
# Free loopback ports (others may run servers on this machine; abr's listener uses SO_REUSEPORT,
# so it could even share a port with another abr: never start on a port in use).
port_free() { [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]; } # any state: a client socket can hold it too
pick_port() { # FIRST_CANDIDATE AVOID
  local p
  for ((p = $1; p < $1 + 200; p++)); do
    [[ $p != "$2" ]] && port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port from $1"
}
[[ -n $NGINX_PORT ]] || NGINX_PORT=$(pick_port 18080 '')
[[ -n $ABR_PORT ]] || ABR_PORT=$(pick_port 18180 "$NGINX_PORT")
port_free "$NGINX_PORT" || die "port $NGINX_PORT is in use (set NGINX_PORT)"
port_free "$ABR_PORT" || die "port $ABR_PORT is in use (set ABR_PORT)"
# After start-up: only our processes listen there.
own_port() { # PORT PID…
  local port=$1 listeners p
  shift
  listeners=$(ss -Hltnp "( sport = :$port )" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
  for p in $listeners; do
    [[ " $* " == *" $p "* ]] || die "port $port is also served by pid $p, not started here"
  done
}

wait_url() { # URL PID NAME
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$2" 2>/dev/null || die "$3 exited during start-up (see $LOGS)"
    curl -s -o /dev/null -r 0-0 "$1" && return 0
    sleep 0.1
  done
  die "$3 did not answer $1"
}

port_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PORT"; else echo "$ABR_PORT"; fi; }
server_pids() { # the server's processes: abr is one, nginx master + workers (current)
  # shellcheck disable=SC2046
  if [[ $1 == abr ]]; then echo "$ABR_PID"; else echo "$NGINX_PID" $(ps -o pid= --ppid "$NGINX_PID"); fi
}
rss_kb() { # SERVER → summed VmRSS in kB
  local s=0 p v
  for p in $(server_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}

if [[ $ACCESS_LOG == 1 ]]; then
  NGINX_ACCESS_LOG="$LOGS/nginx-access.log"
  ABR_LOG_FILTER=warn # abr's default: JSON access lines at info
else
  NGINX_ACCESS_LOG=off
  ABR_LOG_FILTER=warn,access=off
fi
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@ROOT@|$ROOTDIR|g" -e "s|@PORT@|$NGINX_PORT|g" \
  -e "s|@WORKERS@|$WORKERS|g" -e "s|@LISTEN_OPTS@|backlog=4096$([[ $NGINX_REUSEPORT == 1 ]] && echo ' reuseport')|" -e "s|access_log off;|access_log $NGINX_ACCESS_LOG;|" \
  "$HERE/nginx.conf.in" >"$PREFIX/nginx.conf"
"$NGINX" -t -q -c "$PREFIX/nginx.conf" -p "$PREFIX" -e "$PREFIX/error.log" ||
  die "nginx -t failed (see $PREFIX/error.log)"
log "starting nginx on 127.0.0.1:$NGINX_PORT ($WORKERS workers)"
"$NGINX" -c "$PREFIX/nginx.conf" -p "$PREFIX" -e "$PREFIX/error.log" >>"$LOGS/nginx.out" 2>&1 &
NGINX_PID=$!
cmd "$NGINX -c $PREFIX/nginx.conf -p $PREFIX -e $PREFIX/error.log &   # daemon off; config: scripts/bench-origin/nginx.conf.in"
wait_url "http://127.0.0.1:$NGINX_PORT$(seg_path 1)" "$NGINX_PID" nginx
sleep 0.3
NGINX_CHILDREN=$(ps -o pid= --ppid "$NGINX_PID" | tr '\n' ' ')
# shellcheck disable=SC2086
own_port "$NGINX_PORT" "$NGINX_PID" $NGINX_CHILDREN

log "starting abr serve on 127.0.0.1:$ABR_PORT ($WORKERS workers)"
: >"$LOGS/abr.log"
"$ABR" --log "$ABR_LOG_FILTER" serve --root "$ROOTDIR" --listen "127.0.0.1:$ABR_PORT" \
  --workers "$WORKERS" --shutdown-grace 0 --drain-timeout 1 "${ABR_EXTRA[@]}" 2>>"$LOGS/abr.log" &
ABR_PID=$!
cmd "$ABR --log $ABR_LOG_FILTER serve --root $ROOTDIR --listen 127.0.0.1:$ABR_PORT --workers $WORKERS --shutdown-grace 0 --drain-timeout 1${ABR_EXTRA_ARGS:+ $ABR_EXTRA_ARGS} 2>>$LOGS/abr.log &"
wait_url "http://127.0.0.1:$ABR_PORT/healthz" "$ABR_PID" abr
own_port "$ABR_PORT" "$ABR_PID"
sleep 0.5
IDLE_START_ABR=$(rss_kb abr)
IDLE_START_NGINX=$(rss_kb nginx)

# ---------------------------------------------------------------------------------------------
# 5. Behaviour check with curl: the same requests to both, summarised (status, type, length,
# Content-Range/Encoding, body compared with the file's bytes).
log "behaviour check (curl)"
SEG1=$ROOTDIR$(seg_path 1)
slice_sha() { tail -c +$(($2 + 1)) "$1" | head -c "$3" | sha256sum | cut -d' ' -f1; }
hdr() { grep -i "^$2:" "$1" | tail -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
probe() { # SERVER PATH EXPECT_SHA|- [curl args…] → one-line summary
  local server=$1 path=$2 want=$3
  shift 3
  local h=$OUT/probe.h b=$OUT/probe.b code type len cr ce body a args=()
  for a in "$@"; do # __ETAG__: this server's ETag of PATH
    [[ $a == *__ETAG__* ]] && a=${a//__ETAG__/$(etag_of "$server" "$path")}
    args+=("$a")
  done
  set -- "${args[@]}"
  code=$(curl -s -o "$b" -D "$h" -w '%{http_code}' "$@" "http://127.0.0.1:$(port_of "$server")$path") || code=ERR
  type=$(hdr "$h" content-type | sed 's/;.*//')
  len=$(hdr "$h" content-length)
  cr=$(hdr "$h" content-range)
  ce=$(hdr "$h" content-encoding)
  body=''
  if [[ $want != - ]]; then
    local got
    if [[ $ce == gzip ]]; then got=$(gzip -dc <"$b" 2>/dev/null | sha256sum | cut -d' ' -f1); else got=$(sha256sum <"$b" | cut -d' ' -f1); fi
    if [[ $got == "$want" ]]; then body=' body=ok'; else body=' body=DIFFERENT'; fi
  fi
  [[ $type == multipart/byteranges ]] && len='*'
  [[ $ce == gzip ]] && len="*"
  printf '%s %s len=%s%s%s%s' "$code" "${type:--}" "${len:--}" "${cr:+ range=$cr}" "${ce:+ enc=$ce}" "$body"
}
etag_of() { curl -s -o /dev/null -D - "http://127.0.0.1:$(port_of "$1")$2" | hdr /dev/stdin etag; }
{
  echo "Summary per server: status, Content-Type, Content-Length, Content-Range, Content-Encoding,"
  echo "body compared with the file's bytes (gzip decoded). ETags and multipart boundaries differ by"
  echo "design and are not compared."
  echo
  echo "| check | request | nginx | abr | same |"
  echo "| --- | --- | --- | --- | --- |"
} >"$OUT/behaviour.md"
BEHAVIOUR_DIFFS=0
check_row() { # NAME DESCRIPTION PATH EXPECT_SHA|- [curl args…]
  local name=$1 desc=$2 path=$3 want=$4
  shift 4
  local n a same
  n=$(probe nginx "$path" "$want" "$@")
  a=$(probe abr "$path" "$want" "$@")
  if [[ $n == "$a" ]]; then same=yes; else same='**no**'; BEHAVIOUR_DIFFS=$((BEHAVIOUR_DIFFS + 1)); fi
  echo "| $name | $desc | $n | $a | $same |" >>"$OUT/behaviour.md"
}
SEGP=$(seg_path 1)
FULL=$(sha256sum <"$SEG1" | cut -d' ' -f1)
check_row segment "GET $SEGP" "$SEGP" "$FULL"
check_row head "HEAD $SEGP" "$SEGP" - -I
check_row range-mid "Range: bytes=1000000-1262143" "$SEGP" "$(slice_sha "$SEG1" 1000000 262144)" -H 'Range: bytes=1000000-1262143'
check_row range-first "Range: bytes=0-262143" "$SEGP" "$(slice_sha "$SEG1" 0 262144)" -H 'Range: bytes=0-262143'
check_row range-last "Range: bytes=1835008-2097151" "$SEGP" "$(slice_sha "$SEG1" 1835008 262144)" -H 'Range: bytes=1835008-2097151'
check_row range-past-end "Range: bytes=2097000-3000000" "$SEGP" "$(slice_sha "$SEG1" 2097000 152)" -H 'Range: bytes=2097000-3000000'
check_row range-open "Range: bytes=2097000-" "$SEGP" "$(slice_sha "$SEG1" 2097000 152)" -H 'Range: bytes=2097000-'
check_row range-suffix "Range: bytes=-100" "$SEGP" "$(slice_sha "$SEG1" $((SEGSIZE - 100)) 100)" -H 'Range: bytes=-100'
check_row range-multi "Range: bytes=0-9,100-109" "$SEGP" - -H 'Range: bytes=0-9,100-109'
check_row range-unsat "Range: bytes=3000000-" "$SEGP" - -H 'Range: bytes=3000000-'
check_row range-invalid "Range: bytes=abc" "$SEGP" "$FULL" -H 'Range: bytes=abc'
check_row if-none-match "If-None-Match: (its own ETag)" "$SEGP" - -H "If-None-Match: __ETAG__"
check_row if-range-match "If-Range: (its own ETag) + Range: bytes=0-99" "$SEGP" "$(slice_sha "$SEG1" 0 100)" -H "If-Range: __ETAG__" -H 'Range: bytes=0-99'
check_row if-range-stale 'If-Range: "stale" + Range' "$SEGP" "$FULL" -H 'If-Range: "stale"' -H 'Range: bytes=0-99'
check_row missing "GET missing segment" "$(seg_path 99999)" -
while read -r mpath _; do
  check_row manifest "GET $mpath" "$mpath" "$(sha256sum <"$ROOTDIR$mpath" | cut -d' ' -f1)"
done <"$OUT/manifests.txt"
read -r mpath _ <"$OUT/manifests.txt"
check_row manifest-gzip "GET $mpath, Accept-Encoding: gzip" "$mpath" "$(sha256sum <"$ROOTDIR$mpath" | cut -d' ' -f1)" -H 'Accept-Encoding: gzip'
rm -f "$OUT/probe.h" "$OUT/probe.b"
log "behaviour check: $BEHAVIOUR_DIFFS difference(s) (table in the report)"

# ---------------------------------------------------------------------------------------------
# 6. Runs.
export BENCH_LUA_DIR=$HERE
mix_script() { case $1 in manifests-gzip) echo "$HERE/manifests.lua" ;; *) echo "$HERE/$1.lua" ;; esac; }
mix_args() {
  case $1 in
    segments) echo "$NSEG $SEGFMT $SEGSIZE" ;;
    ranges) echo "$NSEG $SEGFMT $SEGSIZE $RANGELEN" ;;
    manifests) echo "$OUT/manifests.txt" ;;
    manifests-gzip) echo "$OUT/manifests.txt gzip" ;;
  esac
}

run_wrk() { # OUTFILE CHECK(0|1) SECONDS CONNS SERVER MIX
  local out=$1 check=$2 secs=$3 c=$4 server=$5 mix=$6 args
  read -r -a args <<<"$(mix_args "$mix")"
  local cmdline=(wrk -t"$THREADS" -c"$c" -d"${secs}s" --timeout 30s --latency -s "$(mix_script "$mix")"
    "http://127.0.0.1:$(port_of "$server")" -- "${args[@]}")
  printf '# BENCH_CHECK=%s BENCH_DELAY_MS=%s %s\n' "$check" "$DELAY_MS" "${cmdline[*]}" >"$out"
  BENCH_CHECK=$check BENCH_DELAY_MS=$DELAY_MS "${cmdline[@]}" >>"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || die "wrk failed: $(tail -3 "$out")"
  WRK_PID=''
  grep -q '^BENCH ' "$out" || die "no BENCH line in $out"
  if ((DELAY_MS > 0)); then LAST_CMD="BENCH_CHECK=$check BENCH_DELAY_MS=$DELAY_MS ${cmdline[*]}"; else LAST_CMD="BENCH_CHECK=$check ${cmdline[*]}"; fi
}
DELAY_MS=0

# CPU time (utime + stime, all threads) of each server process: "PID:TICKS …".
cpu_snap() {
  local p
  for p in $(server_pids "$1"); do
    awk -v p="$p" '{ sub(/^.*\) /, ""); print p ":" $12 + $13 }' "/proc/$p/stat" 2>/dev/null || true
  done | tr '\n' ' '
}
# The kernel's TCP counters (system-wide; nothing else should run): zero-window probes (the
# sender's persist timer fired: a connection stalled ≥ 200 ms because the client's receive
# window stayed shut), tail-loss probes and retransmitted segments. They explain most of the
# run-to-run spread of p99 with whole segments at 512 connections, where wrk is the bottleneck.
tcp_snap() { # → "LOSSPROBES WINPROBES RETRANS"
  awk '($1 == "TcpExt:" || $1 == "Tcp:") && !($1 in h) { for (i = 2; i <= NF; i++) k[$1, i] = $i; h[$1] = 1; next }
       $1 == "TcpExt:" || $1 == "Tcp:" { for (i = 2; i <= NF; i++) v[k[$1, i]] = $i }
       END { print v["TCPLossProbes"] + 0, v["TCPWinProbe"] + 0, v["RetransSegs"] + 0 }' /proc/net/netstat /proc/net/snmp
}
tcp_delta() { # BEFORE AFTER → "tcp_lossprobe=… tcp_winprobe=… tcp_retrans=…"
  local -a a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  echo "tcp_lossprobe=$((b[0] - a[0])) tcp_winprobe=$((b[1] - a[1])) tcp_retrans=$((b[2] - a[2]))"
}
cpu_delta() { # BEFORE AFTER → "TOTAL_TICKS SPLIT" (SPLIT: per-process ticks, comma-separated)
  local -A b=()
  local kv total=0 split=''
  for kv in $1; do b[${kv%%:*}]=${kv#*:}; done
  for kv in $2; do
    local d=$((${kv#*:} - ${b[${kv%%:*}]:-0}))
    total=$((total + d))
    split+="${split:+,}$d"
  done
  echo "$total $split"
}
CLK_TCK=$(getconf CLK_TCK)

sample_rss() { # SERVER FILE: every 0.5 s until killed
  while :; do
    rss_kb "$1" >>"$2"
    sleep 0.5
  done
}

: >"$OUT/runs.txt"
: >"$OUT/paced.txt"
runs_total=$((ROUNDS * ${#MIXES[@]} * ${#CONNS[@]} * 2))
eta=$((runs_total * (DUR + WARMUP_S + 2) + PACED_ROUNDS * ${#MIXES[@]} * ${#CONNS[@]} * 2 * (DUR + 1)))
log "$runs_total measured runs of ${DUR}s (+${WARMUP_S}s checked warm-up each): about $((eta / 60)) min $((eta % 60)) s"
{
  echo "Load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/load.txt"
declare -A recorded=()
n=0
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=(nginx abr); else order=(abr nginx); fi
  for mix in "${MIXES[@]}"; do
    for c in "${CONNS[@]}"; do
      pos=0
      for server in "${order[@]}"; do
        pos=$((pos + 1))
        n=$((n + 1))
        tag="r${round}-${mix}-c${c}-${server}"
        run_wrk "$RAW/$tag.warmup.txt" 1 "$WARMUP_S" "$c" "$server" "$mix"
        warm=$(grep '^BENCH ' "$RAW/$tag.warmup.txt")
        if [[ -z ${recorded[warm]:-} ]]; then cmd "$LAST_CMD   # checked warm-up (example)"; recorded[warm]=1; fi
        sleep 0.5
        # Access logs (ACCESS_LOG=1) hold only the latest run of each server: truncated (the
        # servers append) so that a long benchmark does not fill the disk.
        if [[ $ACCESS_LOG == 1 ]]; then
          if [[ $server == nginx ]]; then : >"$LOGS/nginx-access.log"; else : >"$LOGS/abr.log"; fi
        fi
        rssf=$RAW/$tag.rss
        : >"$rssf"
        if ((c == ${CONNS[-1]})); then
          sample_rss "$server" "$rssf" &
          SAMPLER_PID=$!
        fi
        cpu0=$(cpu_snap "$server")
        tcp0=$(tcp_snap)
        run_wrk "$RAW/$tag.txt" "$CHECK_MEASURED" "$DUR" "$c" "$server" "$mix"
        read -r cpu_ticks cpu_split < <(cpu_delta "$cpu0" "$(cpu_snap "$server")")
        tcp=$(tcp_delta "$tcp0" "$(tcp_snap)")
        if [[ -n $SAMPLER_PID ]]; then
          kill "$SAMPLER_PID" 2>/dev/null || true
          wait "$SAMPLER_PID" 2>/dev/null || true
          SAMPLER_PID=''
        fi
        if [[ -z ${recorded[$mix-$c-$server]:-} ]]; then cmd "$LAST_CMD"; recorded[$mix-$c-$server]=1; fi
        kill -0 "$NGINX_PID" 2>/dev/null || die "nginx died (see $PREFIX/error.log)"
        kill -0 "$ABR_PID" 2>/dev/null || die "abr died (see $LOGS/abr.log)"
        rss_max=$(sort -n "$rssf" | tail -1)
        rss_end=$(tail -1 "$rssf")
        line=$(grep '^BENCH ' "$RAW/$tag.txt" | sed 's/^BENCH //')
        wc=$(sed -n 's/.* checked=\([0-9]*\) bad=\([0-9]*\) first_bad=\([^ ]*\).*/warm_checked=\1 warm_bad=\2 warm_first_bad=\3/p' <<<"$warm")
        echo "round=$round order=$pos mix=$mix conns=$c server=$server $line $wc rss_max_kb=${rss_max:-0} rss_end_kb=${rss_end:-0} cpu_ms=$((cpu_ticks * 1000 / CLK_TCK)) cpu_split_ticks=$cpu_split $tcp" >>"$OUT/runs.txt"
        python3 - "$line $((cpu_ticks * 1000 / CLK_TCK))" <<'EOF' | sed "s/^/[$n\/$runs_total] $tag: /" >&2
import sys
d = dict(t.split("=", 1) for t in sys.argv[1].split() if "=" in t)
s = int(d["duration_us"]) / 1e6
e = sum(int(d["err_" + k]) for k in ("connect", "read", "write", "timeout", "status"))
print(f"{int(d['requests']) / s:.0f} req/s, {int(d['bytes']) / s / 1048576:.1f} MiB/s, "
      f"p50 {int(d['p50_us']) / 1000:.2f} ms, p99 {int(d['p99_us']) / 1000:.2f} ms, errors {e}, "
      f"server CPU {int(sys.argv[1].split()[-1]) / 10 / s:.0f} %")
EOF
        sleep 0.5
      done
    done
  done
done
# Paced runs: the same request rate for both servers, below either's capacity (PACED_FRACTION of
# the lower of the two closed-loop medians above): each connection waits DELAY_MS before each
# request. In wrk's closed loop the client shares the CPUs and saturates, so a faster server
# also loads the client harder and its p99 then includes the client's queueing; at the same rate
# the p99 is the servers'.
paced_delay() { # MIX CONNS → delay in ms per request per connection
  python3 - "$OUT/runs.txt" "$1" "$2" "$PACED_FRACTION" <<'EOF'
import statistics, sys
runs, mix, conns, frac = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rps = {"nginx": [], "abr": []}
for line in open(runs):
    d = dict(t.split("=", 1) for t in line.split() if "=" in t)
    if d.get("mix") == mix and d.get("conns") == conns and d.get("server") in rps:
        rps[d["server"]].append(int(d["requests"]) / (int(d["duration_us"]) / 1e6))
target = frac * min(statistics.median(v) for v in rps.values())
print(max(1, round(int(conns) * 1000 / target)))
EOF
}
if ((PACED_ROUNDS > 0)); then
  paced_total=$((PACED_ROUNDS * ${#MIXES[@]} * ${#CONNS[@]} * 2))
  log "$paced_total paced runs of ${DUR}s (the same request rate for both servers)"
  n=0
  for ((round = 1; round <= PACED_ROUNDS; round++)); do
    if ((round % 2)); then order=(nginx abr); else order=(abr nginx); fi
    for mix in "${MIXES[@]}"; do
      for c in "${CONNS[@]}"; do
        DELAY_MS=$(paced_delay "$mix" "$c")
        for server in "${order[@]}"; do
          n=$((n + 1))
          tag="p${round}-${mix}-c${c}-${server}"
          run_wrk "$RAW/$tag.txt" 0 "$DUR" "$c" "$server" "$mix"
          if [[ -z ${recorded[paced-$mix-$c-$server]:-} ]]; then cmd "$LAST_CMD   # paced"; recorded[paced-$mix-$c-$server]=1; fi
          line=$(grep '^BENCH ' "$RAW/$tag.txt" | sed 's/^BENCH //')
          echo "round=$round mix=$mix conns=$c server=$server delay_ms=$DELAY_MS $line" >>"$OUT/paced.txt"
          log "[$n/$paced_total] $tag (delay ${DELAY_MS} ms): $(sed 's/.*p50_us=\([0-9]*\) p99_us=\([0-9]*\).*/p50 \1 µs, p99 \2 µs/' <<<"$line")"
          sleep 0.5
        done
      done
    done
  done
  DELAY_MS=0
fi

sleep 2
IDLE_END_ABR=$(rss_kb abr)
IDLE_END_NGINX=$(rss_kb nginx)
echo "Load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"

# ---------------------------------------------------------------------------------------------
# 7. Report.
kib2mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
{
  echo "| server | idle before the first run (MiB) | idle 2 s after the last run (MiB) |"
  echo "| --- | ---: | ---: |"
  echo "| abr | $(kib2mib "$IDLE_START_ABR") | $(kib2mib "$IDLE_END_ABR") |"
  echo "| nginx | $(kib2mib "$IDLE_START_NGINX") | $(kib2mib "$IDLE_END_NGINX") |"
} >"$OUT/rss.md"

nginx_v=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
wrk_v=$( (wrk -v 2>&1 || true) | head -1 | sed 's/ Copyright.*//')
{
  echo "| | |"
  echo "| --- | --- |"
  echo "| CPUs (nproc) | $(nproc) |"
  echo "| CPU model | $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) |"
  echo "| memory | $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) |"
  echo "| kernel | $(uname -sr) |"
  # shellcheck disable=SC1091
  echo "| OS | $(. /etc/os-release && echo "$PRETTY_NAME") |"
  echo "| nginx | $nginx_v (Debian package $(dpkg-query -W -f '${Version}' nginx 2>/dev/null || echo '?')) |"
  echo "| wrk | $wrk_v |"
  echo "| abr | $("$ABR" --version 2>/dev/null), commit $ABR_COMMIT |"
  echo "| rustc | $(rustc -V 2>/dev/null) |"
  echo "| open files (ulimit -n) | $(ulimit -n) |"
  echo "| net.core.somaxconn | $(cat /proc/sys/net/core/somaxconn) |"
  echo "| load | $(tr '\n' ';' <"$OUT/load.txt" | sed 's/;$//; s/;/; /g') |"
} >"$OUT/machine.md"

if [[ $ACCESS_LOG == 1 ]]; then
  logging="both log every request to a file: nginx \`access_log $LOGS/nginx-access.log\` (combined format), abr its JSON access lines (\`--log warn\`, stderr → $LOGS/abr.log)"
else
  logging="neither writes access logs: nginx \`access_log off\` (error_log at warn to its prefix), abr \`--log warn,access=off\` (its JSON access lines off; warnings to $LOGS/abr.log). abr still counts its Prometheus metrics per request (always on, no switch)"
fi
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'): \`scripts/bench-origin.sh $DUR $ROUNDS\` — $ROUNDS round(s); each run ${DUR} s measured after a ${WARMUP_S} s checked warm-up; wrk -t$THREADS --timeout 30s over loopback; connections ${CONNS[*]}; mixes ${MIXES[*]}."
  echo
  echo "- **Servers.** nginx $nginx_v (master + $WORKERS workers, sendfile on, tcp_nopush on; config rendered from scripts/bench-origin/nginx.conf.in, which lists every non-default directive and why) and \`abr serve --workers $WORKERS\` (defaults otherwise: no hot-file cache; file bodies of 64 KiB or more sent with sendfile(2), smaller ones and manifests from its 1 s open-file cache), both on 127.0.0.1, same ROOT, same MIME types and Range/conditional behaviour (see the behaviour check), same Cache-Control/Vary/X-Request-Id response headers."
  echo "- **Logging.** ${logging}."
  echo "- **Data.** $NSEG segments of $SEGSIZE bytes (deterministic random bytes, page-cached before the runs); manifests: $(wc -l <"$OUT/manifests.txt") files of a real abr package of a ${FIXTURE_S} s fixture ($MAN_MIN–$MAN_MAX bytes)."
  # shellcheck disable=SC2016
  echo "- **Mixes.** segments: whole segment, random file; ranges: \`Range: bytes=a-(a+$((RANGELEN - 1)))\`, a uniform in [0, $((SEGSIZE - RANGELEN))], random file; manifests: random manifest, no Accept-Encoding$([[ $GZIP_MIX == 1 ]] && echo '; manifests-gzip: the same with `Accept-Encoding: gzip` (nginx gzip level 1 per request, abr compresses once and caches)'). wrk threads are seeded the same for both servers."
  echo "- **Order.** Interleaved: for each round, mix and connection count, nginx then abr in odd rounds, abr then nginx in even rounds."
  echo "- **Checks.** Every warm-up runs a wrk \`response\` hook checking each status (200, or 206 for ranges), body length and Content-Range; the measured runs are checked by wrk's counters (socket errors, status ≥ 400) and bytes per response$([[ $CHECK_MEASURED == 1 ]] && echo ', and (CHECK_MEASURED=1) the same hook') — any problem is shown in the \`check\` column."
  if [[ $NGINX_REUSEPORT == 1 || -n $ABR_EXTRA_ARGS ]]; then
    # shellcheck disable=SC2016
    echo "- **Non-default settings.**${ABR_EXTRA_ARGS:+ abr serve also got \`$ABR_EXTRA_ARGS\`.}$([[ $NGINX_REUSEPORT == 1 ]] && echo ' nginx listens with `reuseport`.')"
  fi
  echo "- **nginx workers.** Without \`reuseport\` (the default) one nginx worker may accept a whole burst of connections and serve them alone: the per-process CPU ticks in \"Every run\" (master first) show the split. abr's acceptor hands connections to its workers in turn."
  if awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" 'BEGIN{exit !(l > n / 2)}'; then
    echo "- **⚠ Busy machine.** $(tr '\n' ';' <"$OUT/load.txt" | sed 's/;$//; s/;/; /g') on $(nproc) CPUs: other processes competed for the CPUs during the runs, so these figures are noisy."
  fi
  echo "- **Caveat.** wrk, nginx and abr share the same $(nproc) CPUs: the client takes a large share, and anything else running on the machine adds noise; compare the ratios, not the absolute figures."
} >"$OUT/settings.md"

{
  echo '```sh'
  echo "ulimit -n $(ulimit -n)"
  cat "$OUT/commands.md.tmp"
  echo "# RSS: awk '/^VmRSS:/' /proc/PID/status every 0.5 s during each ${CONNS[-1]}-connection run (nginx: master + workers)"
  echo '```'
} >"$OUT/commands.md"
rm -f "$OUT/commands.md.tmp"

python3 "$HERE/report.py" "$OUT"
log "report: $OUT/results.md"
