#!/usr/bin/env bash
# scripts/bench-ingest.sh [--only throughput,memory,playable] [SIZE=2G] [ROUNDS=3]
#
# Benchmark (not a test) of `abr serve --ingest` (tus 1.0 uploads at /api/v1/uploads, packaging
# jobs run by in-process workers). Installs its own needs idempotently (`npm ci` of the pinned
# @tus/server + @tus/file-store + tus-js-client in scripts/bench/tus-server/ when missing), builds
# abr (cargo build --release --locked; CARGO_TARGET_DIR is honoured) and copies the binary, so a
# concurrent rebuild cannot swap it mid-run. Everything runs on loopback; every process it starts
# is stopped by pid on exit and on error.
#
# Parts (names for --only):
#   throughput  one pseudo-random file of SIZE bytes (default 2G; K/M/G = KiB/MiB/GiB), uploaded
#               by the same client (tus-js-client in Node, scripts/bench/tus-server/upload.mjs,
#               creation-with-upload then PATCHes of CHUNK bytes) to (a) abr serve --ingest and
#               (b) @tus/server + @tus/file-store (scripts/bench/tus-server/server.mjs); both
#               store under target/bench/ingest/store (same filesystem), a fresh directory and a
#               fresh server per run. ROUNDS interleaved rounds (odd: abr then tus, even: tus then
#               abr). Per run: MB/s (client start → last PATCH's response), the server's CPU and
#               peak RSS (/proc), the client's CPU (scripts/bench/measure.py). Medians, abr/tus.
#               Each round then measures the local write ceilings of both durability models
#               (scripts/bench/ingest.py disk: the file copied in 1 MiB writes with no fsync,
#               and with abr's commit — fdatasync + durable offset file — every CHUNK bytes).
#   memory      abr's VmHWM during a LARGE (default 4G) upload vs a SMALL (default 100M) one, a
#               fresh server each; MEM_RUNS (default 3) pairs, small then large; the ratio of
#               each pair, median and worst (target <= 1.10).
#   playable    a PLAY_S (default 60) s fixtures/make.sh PLAY_SHAPE (default mezz1080, a
#               mezzanine bitrate, ~25 Mb/s; 1080p30 is the light test fixture) source uploaded
#               to abr serve --ingest --job-workers JOB_WORKERS (default 2); time from the last PATCH's response to both manifests
#               on disk and to ffprobe reading the HLS master over HTTP from the server.
#               PLAY_RUNS (default 1) runs, a fresh server each.
#
# Environment: CHUNK=8M LARGE=4G SMALL=100M MEM_RUNS=3 PLAY_S=60 PLAY_SHAPE=mezz1080 JOB_WORKERS=2
#              PLAY_RUNS=1 ABR_BIN (use this binary, no build) PORT_BASE=18480
#              BENCH_NOTE (a sentence for the report, e.g. that the machine was shared)
#
# Output: a Markdown report written to target/bench/ingest/report.md (all runs, medians, ratios,
# durability note, exact commands) and a short summary on stdout; raw per-run JSON and logs in
# target/bench/ingest/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

usage() { sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf '[bench-ingest %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench-ingest: %s\n' "$*" >&2; exit 1; }

ONLY=throughput,memory,playable pos=()
while (($#)); do
  case $1 in
    --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift ;;
    --only=*) ONLY=${1#*=} ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) pos+=("$1") ;;
  esac
  shift
done
bytes_of() { # 100M → 104857600 (K/M/G binary; plain digits = bytes)
  local v=$1
  [[ $v =~ ^([0-9]+)([KMG]?)$ ]] || die "bad size: $v (digits, optional K/M/G)"
  case ${BASH_REMATCH[2]} in
    K) echo $((BASH_REMATCH[1] << 10)) ;;
    M) echo $((BASH_REMATCH[1] << 20)) ;;
    G) echo $((BASH_REMATCH[1] << 30)) ;;
    *) echo "${BASH_REMATCH[1]}" ;;
  esac
}
SIZE=$(bytes_of "${pos[0]:-2G}")
ROUNDS=${pos[1]:-3}
CHUNK=$(bytes_of "${CHUNK:-8M}")
LARGE=$(bytes_of "${LARGE:-4G}")
SMALL=$(bytes_of "${SMALL:-100M}")
PLAY_S=${PLAY_S:-60}
PLAY_SHAPE=${PLAY_SHAPE:-mezz1080}
MEM_RUNS=${MEM_RUNS:-3}
JOB_WORKERS=${JOB_WORKERS:-2}
PLAY_RUNS=${PLAY_RUNS:-1}
PORT_BASE=${PORT_BASE:-18480}
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be an integer >= 1"
[[ $PLAY_S =~ ^[0-9]+$ && $PLAY_S -ge 2 ]] || die "PLAY_S must be an integer >= 2"
[[ $JOB_WORKERS =~ ^[0-9]+$ && $JOB_WORKERS -ge 1 ]] || die "JOB_WORKERS must be an integer >= 1"
[[ $PLAY_RUNS =~ ^[0-9]+$ && $PLAY_RUNS -ge 1 ]] || die "PLAY_RUNS must be an integer >= 1"
[[ $MEM_RUNS =~ ^[0-9]+$ && $MEM_RUNS -ge 1 ]] || die "MEM_RUNS must be an integer >= 1"
((SIZE > 0 && CHUNK > 0 && LARGE > 0 && SMALL > 0)) || die "sizes must be > 0"
IFS=, read -r -a PARTS <<<"$ONLY"
for p in "${PARTS[@]}"; do [[ $p =~ ^(throughput|memory|playable)$ ]] || die "unknown part $p"; done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

OUT=$REPO/target/bench/ingest
STORE=$OUT/store
RUNS=$OUT/runs
DATA=$OUT/data
BIN=$OUT/bin
TUSDIR=$REPO/scripts/bench/tus-server
HELP=$REPO/scripts/bench/ingest.py
MEASURE=$REPO/scripts/bench/measure.py
TOKEN=bench-ingest-token
PRINCIPAL=bench
TOKEN_HASH=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)

SERVER_PID='' SERVER_NAME=''
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
  stop_pid "$SERVER_NAME" "$SERVER_PID"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT" "$RUNS" "$DATA" "$BIN"
rm -f "$RUNS"/*.json "$RUNS"/*.log "$OUT/runs.tsv"
: >"$OUT/runs.tsv"
: >"$OUT/commands.txt"
cmd() { local c="$*"; printf '%s\n' "${c//"$REPO"\//}" >>"$OUT/commands.txt"; } # as run, for the report

# ---------------------------------------------------------------------------------------------
# 1. Dependencies (idempotent).
for t in node npm python3 curl ffprobe sha256sum; do
  command -v "$t" >/dev/null || die "$t is needed"
done
if [[ ! -f $TUSDIR/node_modules/.package-lock.json || $TUSDIR/package-lock.json -nt $TUSDIR/node_modules/.package-lock.json ]]; then
  log "npm ci in scripts/bench/tus-server"
  (cd "$TUSDIR" && npm ci --no-audit --no-fund >&2)
fi
cmd "(cd scripts/bench/tus-server && npm ci)   # when node_modules is missing or older than the lock"
pkg_version() { node -e 'console.log(require(process.argv[1]).version)' "$TUSDIR/node_modules/$1/package.json"; }
TUS_SERVER_V=$(pkg_version @tus/server)
TUS_FILESTORE_V=$(pkg_version @tus/file-store)
TUS_JS_V=$(pkg_version tus-js-client)
NODE_V=$(node --version)

if [[ -n ${ABR_BIN:-} ]]; then
  cp -f "$ABR_BIN" "$BIN/abr"
  cmd "cp $ABR_BIN $BIN/abr   # ABR_BIN given: no build"
else
  log "cargo build --release --locked"
  cargo build --release --locked >&2
  cp -f "${CARGO_TARGET_DIR:-target}/release/abr" "$BIN/abr"
  cmd "cargo build --release --locked && cp ${CARGO_TARGET_DIR:-target}/release/abr $BIN/abr"
fi
ABR=$BIN/abr
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"

# ---------------------------------------------------------------------------------------------
# 2. Ports and servers.
port_free() { [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]; }
pick_port() {
  local p
  for ((p = PORT_BASE; p < PORT_BASE + 200; p++)); do port_free "$p" && { echo "$p"; return 0; }; done
  die "no free port from $PORT_BASE"
}
wait_ready() { # URL EXPECTED_STATUS
  local i code
  for ((i = 0; i < 200; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER_NAME exited during start-up (see $RUNS)"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS -H 'Tus-Resumable: 1.0.0' "$1" || true)
    [[ $code == "$2" ]] && return 0
    sleep 0.05
  done
  die "$SERVER_NAME did not answer $1"
}
# The server on PORT is ours: its listener's pid.
own_port() {
  local l
  l=$(ss -Hltnp "( sport = :$1 )" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ' ')
  [[ $l == "$SERVER_PID " ]] || die "port $1: listeners '$l', expected $SERVER_PID"
}
# start_abr DIR TAG [extra serve args…]: abr serve --ingest, data DIR/data, ROOT DIR/root.
start_abr() {
  local dir=$1 tag=$2
  shift 2
  PORT=$(pick_port)
  mkdir -p "$dir/root"
  SERVER_NAME=abr
  "$ABR" --log warn serve --root "$dir/root" --listen "127.0.0.1:$PORT" --ingest \
    --data-dir "$dir/data" --upload-tokens "$PRINCIPAL:$TOKEN_HASH" "$@" \
    >"$RUNS/$tag.server.log" 2>&1 &
  SERVER_PID=$!
  cmd "$ABR --log warn serve --root $dir/root --listen 127.0.0.1:$PORT --ingest --data-dir $dir/data --upload-tokens $PRINCIPAL:\$(printf %s $TOKEN | sha256sum | cut -d' ' -f1)${*:+ $*} &"
  wait_ready "http://127.0.0.1:$PORT/api/v1/uploads" 204
  own_port "$PORT"
  ENDPOINT=http://127.0.0.1:$PORT/api/v1/uploads
}
start_tus() { # DIR TAG
  local dir=$1 tag=$2
  PORT=$(pick_port)
  mkdir -p "$dir"
  SERVER_NAME=tus
  node "$TUSDIR/server.mjs" --port "$PORT" --dir "$dir" >"$RUNS/$tag.server.log" 2>&1 &
  SERVER_PID=$!
  cmd "node scripts/bench/tus-server/server.mjs --port $PORT --dir $dir &"
  wait_ready "http://127.0.0.1:$PORT/api/v1/uploads" 204
  own_port "$PORT"
  ENDPOINT=http://127.0.0.1:$PORT/api/v1/uploads
}
stop_server() { stop_pid "$SERVER_NAME" "$SERVER_PID"; SERVER_PID='' SERVER_NAME=''; }

# upload_run KIND TAG SERVER FILE ID: upload FILE to the running server through measure.py
# (files RUNS/ID.*, package name ID), read the server's /proc figures at once, stop it, record
# the run as KIND TAG SERVER.
upload_run() {
  local kind=$1 tag=$2 server=$3 file=$4 id=$5 rc=0 pr
  python3 "$MEASURE" --json "$RUNS/$id.client.json" --log "$RUNS/$id.upload.log" -- \
    node "$TUSDIR/upload.mjs" --endpoint "$ENDPOINT" --file "$file" --chunk-size "$CHUNK" \
    --token "$TOKEN" --name "$id" || rc=$?
  pr=$(python3 "$HELP" proc "$SERVER_PID") || die "$server ($SERVER_PID) is gone after $id"
  cmd "python3 scripts/bench/measure.py --json … --log … -- node scripts/bench/tus-server/upload.mjs --endpoint $ENDPOINT --file $file --chunk-size $CHUNK --token $TOKEN --name $id"
  stop_server
  ((rc == 0)) || { tail -n 5 "$RUNS/$id.upload.log" "$RUNS/$id.server.log" >&2; die "$id: upload failed"; }
  log "  $id: $(python3 "$HELP" merge "$RUNS/$id.json" "$RUNS/$id.client.json" "$RUNS/$id.upload.log" "$pr")"
  printf '%s\t%s\t%s\t%s\n' "$kind" "$tag" "$server" "$RUNS/$id.json" >>"$OUT/runs.tsv"
}
# Fresh store per run (and no upload left behind: up to LARGE bytes each), then `sync`: no run
# starts while the writeback or the journal commit of the one before is still going on (abr's
# fdatasyncs would wait for them, a server that never flushes would not).
fresh() { rm -rf "$STORE"; mkdir -p "$STORE"; sync; }

# A check that the stored bytes are the sent ones (the last run of each server, size-only
# for the big ones would be weak: compare the file itself).
check_stored() { # SERVER FILE
  local f
  if [[ $1 == abr ]]; then f=$(find "$STORE/data/uploads" -name data -type f | head -n1)
  else f=$(find "$STORE/tus" -type f ! -name '*.json' | head -n1); fi
  if [[ -z $f ]] || ! cmp -s "$2" "$f"; then die "$1: stored bytes differ from $2 (${f:-no file})"; fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u '+%Y-%m-%d %H:%M')
T0=$(date +%s)

# ---------------------------------------------------------------------------------------------
# 3. Throughput.
if want throughput; then
  SRC=$DATA/random-$SIZE.bin
  log "data: $SRC ($SIZE pseudo-random bytes, made once)"
  python3 "$HELP" gen "$SRC" "$SIZE" 1
  cmd "python3 scripts/bench/ingest.py gen $SRC $SIZE 1   # random.Random(1) bytes"
  cat "$SRC" >/dev/null # page cache: neither server's run pays the first read
  for ((r = 1; r <= ROUNDS; r++)); do
    order=(abr tus)
    ((r % 2 == 0)) && order=(tus abr)
    log "round $r/$ROUNDS: ${order[*]}"
    for s in "${order[@]}"; do
      fresh
      if [[ $s == abr ]]; then start_abr "$STORE" "thr-r$r-abr"; else start_tus "$STORE/tus" "thr-r$r-tus"; fi
      upload_run throughput "r$r" "$s" "$SRC" "thr-r$r-$s"
      if ((r == ROUNDS)); then check_stored "$s" "$SRC"; fi
    done
    fresh
    for m in none chunk; do # the local write ceiling of each durability model
      log "  disk-r$r-$m: $(python3 "$HELP" disk "$RUNS/disk-r$r-$m.json" "$SRC" "$STORE/disk" "$CHUNK" "$m")"
      printf 'disk\tr%s\t-\t%s\n' "$r" "$RUNS/disk-r$r-$m.json" >>"$OUT/runs.tsv"
    done
    cmd "python3 scripts/bench/ingest.py disk OUT.json ${SRC#"$REPO"/} target/bench/ingest/store/disk $CHUNK none|chunk"
  done
  fresh
fi

# ---------------------------------------------------------------------------------------------
# 4. Memory: abr only, large vs small.
if want memory; then
  declare -A MEM_FILE
  for which in small large; do
    n=$SMALL
    [[ $which == large ]] && n=$LARGE
    MEM_FILE[$which]=$DATA/random-$n.bin
    log "data: ${MEM_FILE[$which]} ($n pseudo-random bytes, made once)"
    python3 "$HELP" gen "${MEM_FILE[$which]}" "$n" 2
    cmd "python3 scripts/bench/ingest.py gen ${MEM_FILE[$which]} $n 2"
  done
  for ((r = 1; r <= MEM_RUNS; r++)); do
    for which in small large; do
      cat "${MEM_FILE[$which]}" >/dev/null
      fresh
      log "memory: pair $r/$MEM_RUNS, $which to abr"
      start_abr "$STORE" "mem-r$r-$which"
      upload_run memory "r$r-$which" abr "${MEM_FILE[$which]}" "mem-r$r-$which"
    done
  done
  fresh
fi

# ---------------------------------------------------------------------------------------------
# 5. Upload → playable.
if want playable; then
  PSRC=$DATA/$PLAY_SHAPE-${PLAY_S}s.mp4
  log "fixtures/make.sh $PLAY_SHAPE ($PLAY_S s)"
  bash fixtures/make.sh "$PLAY_SHAPE" "$PSRC" "$PLAY_S" >/dev/null
  cmd "bash fixtures/make.sh $PLAY_SHAPE $PSRC $PLAY_S"
  PLAY_DURATION=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$PSRC")
  PLAY_VRATE=$(ffprobe -v error -select_streams v:0 -show_entries stream=bit_rate -of csv=p=0 "$PSRC")
  PLAY_BYTES=$(stat -c %s "$PSRC")
  cat "$PSRC" >/dev/null
  for ((r = 1; r <= PLAY_RUNS; r++)); do
    fresh
    name=play$r
    start_abr "$STORE" "play-r$r" --job-workers "$JOB_WORKERS"
    log "playable: run $r/$PLAY_RUNS ($PLAY_BYTES bytes, --job-workers $JOB_WORKERS)"
    python3 "$HELP" playable --json "$RUNS/play-r$r.json" --log "$RUNS/play-r$r.upload.log" \
      --root "$STORE/root/$PRINCIPAL/$name" \
      --ffprobe-url "http://127.0.0.1:$PORT/$PRINCIPAL/$name/hls/master.m3u8" -- \
      node "$TUSDIR/upload.mjs" --endpoint "$ENDPOINT" --file "$PSRC" --chunk-size "$CHUNK" \
      --token "$TOKEN" --name "$name" >&2 ||
      { tail -n 20 "$RUNS/play-r$r.server.log" >&2; die "playable run $r failed"; }
    cmd "python3 scripts/bench/ingest.py playable --json … --root $STORE/root/$PRINCIPAL/$name --ffprobe-url http://127.0.0.1:$PORT/$PRINCIPAL/$name/hls/master.m3u8 -- node scripts/bench/tus-server/upload.mjs --endpoint $ENDPOINT --file $PSRC --chunk-size $CHUNK --token $TOKEN --name $name"
    stop_server
    printf 'playable\tr%s\tabr\t%s\n' "$r" "$RUNS/play-r$r.json" >>"$OUT/runs.tsv"
  done
  fresh
fi
log "all runs took $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------------------------------------
# 6. Report.
export BENCH_START=$START BENCH_END BENCH_COMMIT=$COMMIT BENCH_LOAD_START=$LOAD0
BENCH_END=$(date -u '+%H:%M')
export BENCH_LOAD_END BENCH_MACHINE
BENCH_LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release), kernel $(uname -r), $(df -T "$OUT" | awk 'NR == 2 {print $2}') filesystem under target/"
export BENCH_NOTE=${BENCH_NOTE:-} BENCH_CHUNK=$CHUNK BENCH_STORE=target/bench/ingest/store
export BENCH_TUS_SERVER=$TUS_SERVER_V BENCH_TUS_FILESTORE=$TUS_FILESTORE_V BENCH_TUS_JS=$TUS_JS_V
export BENCH_NODE=$NODE_V BENCH_JOB_WORKERS=$JOB_WORKERS BENCH_PLAY_SHAPE=$PLAY_SHAPE
export BENCH_PLAY_SRC=${PSRC:+${PSRC#"$REPO"/}} BENCH_PLAY_DURATION=${PLAY_DURATION:-} \
  BENCH_PLAY_VRATE=${PLAY_VRATE:-} BENCH_PLAY_BYTES=${PLAY_BYTES:-}
python3 "$HELP" report "$OUT" >"$OUT/report.md"
# Summary: the bold lines of the report.
grep -E '^- \*\*' "$OUT/report.md" || true
log "report: target/bench/ingest/report.md"
