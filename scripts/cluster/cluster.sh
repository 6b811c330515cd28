#!/usr/bin/env bash
# scripts/cluster/cluster.sh up|down|status|roll|kill-node I|restart-node I|kill-worker I|
#                            restart-worker I|stop-redis|start-redis
#
# A local multi-node deployment on 127.0.0.1 (docs/CLUSTER.md): N `abr serve` nodes, one
# redis-server and one nginx load balancer (scripts/cluster/nginx.conf.in); with ingest on, the
# nodes also take uploads and K `abr worker` processes package them, all on one shared data
# directory with the jobs in Redis. Every process it starts is recorded by pid in the state dir
# and stopped by that pid; nothing is stopped by name.
#
#   up              start redis, the nodes (waiting for /readyz 200 on each), then nginx (waiting
#                   for /healthz through it); prints a last line
#                   `cluster up: nginx=http://127.0.0.1:PORT nodes=... redis=...`.
#                   No-op when the cluster already runs; refuses when it partly runs.
#   down            nginx (SIGQUIT, graceful), the nodes (SIGTERM, wait for the drain), redis
#                   (SIGTERM); removes the pid files. Fine when nothing runs.
#   status          each component's pid, alive or not, and each node's /readyz.
#                   Exit 0 all up, 1 something down, 3 nothing runs.
#   roll            rolling restart: for each node in turn SIGTERM, wait for it to exit (60 s),
#                   start it again with the same arguments, wait for /readyz 200, let nginx's
#                   fail_timeout pass, next node. Rebuild ABR_BIN first to deploy a new binary.
#   kill-node I     SIGKILL node I (failure drills).
#   restart-node I  start node I again (it must be down), wait for /readyz 200.
#   kill-worker I   SIGKILL packaging worker I (failure drills; its task's lease then passes).
#   restart-worker I start worker I again (it must be down), wait for it to run.
#   stop-redis      SIGTERM redis-server (it writes its append-only file), wait for it to exit.
#   start-redis     start redis-server again on the same port and directory (it must be down).
#
# Settings (environment, read by `up`; later commands reuse what `up` recorded in
# $CLUSTER_DIR/cluster.env, so only CLUSTER_DIR matters for them):
#   ABR_BIN                 abr binary (default: target/release/abr of this repository)
#   CLUSTER_DIR             state dir: pids, logs, generated configs (default target/cluster)
#   CLUSTER_NODES           number of nodes (3)
#   CLUSTER_ROOT            packages root served by every node (default demo/packages)
#   CLUSTER_PORT            nginx's public port (8080)
#   CLUSTER_NODE_BASE_PORT  node 1's port: node i listens on base+i-1 (9101: 9101..9103 for 3)
#   CLUSTER_REDIS           1: run redis-server and give the nodes --redis; 0: no Redis, each
#                           node keeps its state in-process (1)
#   CLUSTER_REDIS_PORT      redis-server's port (6390)
#   CLUSTER_SESSION_KEY     HMAC key for viewer sessions, the same on every node (`hex:…` or text;
#                           default: a random key made once and kept in $CLUSTER_DIR/session.key)
#   CLUSTER_RATE_LIMIT      per-client requests/s on each node, 0 = off (0)
#   CLUSTER_RATE_BURST      per-client burst (200)
#   CLUSTER_EXTRA_ARGS      more `abr serve` flags for every node, split on spaces ('')
#   CLUSTER_WORKERS         nginx worker processes (2)
#   CLUSTER_INGEST          1: the nodes serve the video service (`--ingest`: uploads, videos,
#                           the library page) with their jobs in Redis, and CLUSTER_JOB_WORKERS
#                           `abr worker` processes package them; needs CLUSTER_REDIS=1 (0)
#   CLUSTER_DATA_DIR        the shared data directory (uploads, staging) (CLUSTER_DIR/data)
#   CLUSTER_UPLOAD_TOKENS   upload tokens, `PRINCIPAL:SHA256HEX[:MAX[:QUOTA]]`, comma-separated ('')
#   CLUSTER_JOB_WORKERS     `abr worker` processes with ingest (2)
#   CLUSTER_WORKER_ARGS     more `abr worker` flags, split on spaces ('')
# Relative paths given in the environment are taken from the current directory; the defaults
# from the repository root.
#
# Logs (appended): $CLUSTER_DIR/node<i>.log (the node's JSON access and app logs, stderr),
# redis.log, nginx-error.log, nginx-access.log (JSON lines), nginx.out (nginx's own output),
# worker<i>.log (abr worker).
# Redis keeps the jobs with ingest on, and the playback state: it runs with its append-only file
# (appendfsync always: what Redis acknowledged survives a crash of Redis) in CLUSTER_DIR.
# Exit status: 0 success, 1 failure, 2 usage error; status: 3 when nothing runs.
set -euo pipefail

CALLER_PWD=$PWD
cd "$(dirname "$0")/../.."
REPO=$PWD
HERE=$REPO/scripts/cluster
TAG=cluster
# shellcheck source=scripts/lib/daemon.sh
. "$REPO/scripts/lib/daemon.sh"

CLUSTER_DIR=$(abs_env "${CLUSTER_DIR:-}" target/cluster)
ENV_FILE=$CLUSTER_DIR/cluster.env

# Node readiness deadline, drain deadline (roll, down), and the pause after a restarted node is
# ready: nginx keeps a node out of rotation for fail_timeout (2 s, nginx.conf.in) after its last
# failed attempt; the next node is stopped only once that has passed.
READY_DEADLINE_S=20
STOP_DEADLINE_S=60
ROLL_SETTLE_S=3

# ---------------------------------------------------------------------------------------------
# Settings: from the environment (up) or from what `up` recorded (every other command).
settings_from_env() {
  BIN=$(abs_env "${ABR_BIN:-}" target/release/abr)
  NODES=${CLUSTER_NODES:-3}
  ROOT=$(abs_env "${CLUSTER_ROOT:-}" demo/packages)
  PORT=${CLUSTER_PORT:-8080}
  BASE_PORT=${CLUSTER_NODE_BASE_PORT:-9101}
  REDIS=${CLUSTER_REDIS:-1}
  REDIS_PORT=${CLUSTER_REDIS_PORT:-6390}
  SESSION_KEY=${CLUSTER_SESSION_KEY:-}
  RATE_LIMIT=${CLUSTER_RATE_LIMIT:-0}
  RATE_BURST=${CLUSTER_RATE_BURST:-200}
  EXTRA_ARGS=${CLUSTER_EXTRA_ARGS:-}
  WORKERS=${CLUSTER_WORKERS:-2}
  INGEST=${CLUSTER_INGEST:-0}
  if [[ -n ${CLUSTER_DATA_DIR:-} ]]; then DATA_DIR=$(abs_env "$CLUSTER_DATA_DIR" .); else DATA_DIR=$CLUSTER_DIR/data; fi
  UPLOAD_TOKENS=${CLUSTER_UPLOAD_TOKENS:-}
  JOB_WORKERS=${CLUSTER_JOB_WORKERS:-2}
  WORKER_ARGS=${CLUSTER_WORKER_ARGS:-}
  local v
  for v in NODES PORT BASE_PORT REDIS_PORT RATE_LIMIT RATE_BURST WORKERS JOB_WORKERS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$(env_name "$v") must be a non-negative integer, got '${!v}'"
  done
  ((NODES >= 1 && NODES <= 64)) || die "CLUSTER_NODES must be 1..64, got $NODES"
  ((WORKERS >= 1)) || die "CLUSTER_WORKERS must be at least 1"
  for v in PORT REDIS_PORT; do
    ((${!v} >= 1 && ${!v} <= 65535)) || die "$(env_name "$v") must be a port (1-65535), got ${!v}"
  done
  ((BASE_PORT >= 1 && BASE_PORT + NODES - 1 <= 65535)) ||
    die "CLUSTER_NODE_BASE_PORT + CLUSTER_NODES - 1 must be a port (at most 65535)"
  [[ $REDIS == 0 || $REDIS == 1 ]] || die "CLUSTER_REDIS must be 0 or 1, got '$REDIS'"
  [[ $INGEST == 0 || $INGEST == 1 ]] || die "CLUSTER_INGEST must be 0 or 1, got '$INGEST'"
  if [[ $INGEST == 1 && $REDIS == 0 ]]; then
    die "CLUSTER_INGEST=1 needs CLUSTER_REDIS=1 (the nodes and workers share the jobs in Redis)"
  fi
  if [[ $INGEST == 0 ]]; then JOB_WORKERS=0; fi
}
env_name() {
  case $1 in
    NODES) echo CLUSTER_NODES ;; PORT) echo CLUSTER_PORT ;; BASE_PORT) echo CLUSTER_NODE_BASE_PORT ;;
    REDIS_PORT) echo CLUSTER_REDIS_PORT ;; RATE_LIMIT) echo CLUSTER_RATE_LIMIT ;;
    RATE_BURST) echo CLUSTER_RATE_BURST ;; WORKERS) echo CLUSTER_WORKERS ;;
    JOB_WORKERS) echo CLUSTER_JOB_WORKERS ;; *) echo "$1" ;;
  esac
}

save_settings() {
  save_vars "$ENV_FILE" BIN NODES ROOT PORT BASE_PORT REDIS REDIS_PORT RATE_LIMIT RATE_BURST EXTRA_ARGS WORKERS \
    INGEST DATA_DIR UPLOAD_TOKENS JOB_WORKERS WORKER_ARGS
}

# Returns 1 when no cluster was ever started from this state dir.
load_settings() {
  [[ -f $ENV_FILE ]] || return 1
  # shellcheck disable=SC1090
  . "$ENV_FILE"
}

node_port() { echo $((BASE_PORT + $1 - 1)); } # node I (1..N)

# ---------------------------------------------------------------------------------------------
# Processes (helpers in scripts/lib/daemon.sh).
pidfile() { echo "$CLUSTER_DIR/$1.pid"; }
is_ours() { # NAME PID: the process is alive and is that component
  local name=$1 pid=$2 cl
  proc_alive "$pid" || return 1
  cl=$(cmdline_of "$pid")
  case $name in
    node*) [[ $cl == *" serve "* && $cl == *"--listen $(node_listen "${name#node}") "* ]] ;;
    worker*) [[ $cl == *" worker "* && $cl == *"--data-dir $DATA_DIR "* ]] ;;
    redis) [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* && $cl == *":$REDIS_PORT"* ]] ;;
    nginx) [[ $cl == *"nginx: master process"* && $cl == *"$CLUSTER_DIR/nginx.conf"* ]] ;;
    *) return 1 ;;
  esac
}

node_listen() { # I → the address node I was started with (its .args file), else the computed one
  local a=() k
  if [[ -f $CLUSTER_DIR/node$1.args ]]; then
    mapfile -d '' -t a <"$CLUSTER_DIR/node$1.args"
    for ((k = 0; k + 1 < ${#a[@]}; k++)); do
      [[ ${a[k]} == --listen ]] && { echo "${a[k + 1]}"; return 0; }
    done
  fi
  echo "127.0.0.1:$(node_port "$1")"
}

# ---------------------------------------------------------------------------------------------
# Redis.
start_redis() {
  local log=$CLUSTER_DIR/redis.log pid end
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server), or set CLUSTER_REDIS=0"
  command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools), or set CLUSTER_REDIS=0"
  port_free "$REDIS_PORT" || die "port $REDIS_PORT (redis) is in use; set CLUSTER_REDIS_PORT"
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  # Jobs live in Redis: the append-only file, fsynced before each write is acknowledged, so a
  # stopped or crashed Redis comes back with every job it acknowledged (no RDB snapshots:
  # --save ''). The files stay in the state dir (--dir); a restart on the same dir reloads them.
  setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly yes \
    --appendfsync always --daemonize no --dir "$CLUSTER_DIR" --logfile '' </dev/null >>"$log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$(pidfile redis)"
  end=$((SECONDS + 10))
  until [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
    if ! proc_alive "$pid" || ((SECONDS >= end)); then
      tail_log "$log"
      die "redis-server did not answer PING on port $REDIS_PORT (log: $log)"
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------
# Nodes. Each node's command line is built once (by `up`) and kept in node<i>.args (NUL-separated),
# so roll and restart-node start exactly the same command.
session_key() {
  local f=$CLUSTER_DIR/session.key
  if [[ -n $SESSION_KEY ]]; then
    echo "$SESSION_KEY"
  else
    if [[ ! -s $f ]]; then
      (umask 077 && printf 'hex:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$f.tmp" && mv -f "$f.tmp" "$f")
    fi
    head -n1 "$f"
  fi
}

write_node_args() { # I KEY
  local i=$1 key=$2 extra=() args
  read -r -a extra <<<"$EXTRA_ARGS"
  args=("$BIN" serve --root "$ROOT" --listen "127.0.0.1:$(node_port "$i")" --node "node$i")
  if [[ $REDIS == 1 ]]; then args+=(--redis "redis://127.0.0.1:$REDIS_PORT/"); fi
  # The nodes take uploads and answer the videos API; the packaging runs in the abr workers.
  if [[ $INGEST == 1 ]]; then
    args+=(--ingest --data-dir "$DATA_DIR" --job-workers 0 --upload-tokens "$UPLOAD_TOKENS")
  fi
  args+=(--session-key "$key" --trusted-proxies 127.0.0.1/32 --rate-limit "$RATE_LIMIT"
    --rate-burst "$RATE_BURST" --log-format json "${extra[@]}")
  (umask 077 && printf '%s\0' "${args[@]}" >"$CLUSTER_DIR/node$i.args")
}

# wait_started NAME PID LOG CHECK...: polls CHECK (a command) until it succeeds; dies with
# LOG's tail when PID exits first, or after READY_DEADLINE_S (saying $NOT_READY_WHY, which a
# check may set).
NOT_READY_WHY=
wait_started() {
  local name=$1 pid=$2 log=$3 end=$((SECONDS + READY_DEADLINE_S))
  shift 3
  NOT_READY_WHY=
  until "$@"; do
    if ! proc_alive "$pid"; then
      tail_log "$log"
      die "$name exited during start-up (log: $log)"
    fi
    if ((SECONDS >= end)); then
      tail_log "$log"
      die "$name not ready within ${READY_DEADLINE_S} s${NOT_READY_WHY:+: $NOT_READY_WHY} (log: $log; pid $pid)"
    fi
    sleep 0.1
  done
}

node_ready() { # LISTEN: /readyz answers 200
  local code
  code=$(http_code "http://$1/readyz")
  NOT_READY_WHY="/readyz on $1 answered ${code/#000/nothing}"
  [[ $code == 200 ]]
}

worker_running() { # LOG FROM: the log says "abr worker running" past byte FROM
  tail -c "+$2" "$1" | grep -q 'abr worker running'
}

start_node() { # I (the node must be down); waits for /readyz 200
  local i=$1 listen port log args=() pid
  [[ -f $CLUSTER_DIR/node$i.args ]] || die "no $CLUSTER_DIR/node$i.args: run 'up' first"
  listen=$(node_listen "$i")
  port=${listen##*:}
  log=$CLUSTER_DIR/node$i.log
  mapfile -d '' -t args <"$CLUSTER_DIR/node$i.args"
  [[ -x ${args[0]} ]] || die "${args[0]} is missing or not executable: run cargo build --release (or set ABR_BIN)"
  port_free "$port" || die "port $port (node$i) is in use by another process"
  log "starting node$i on $listen"
  # setsid: own session, so a Ctrl-C or a signal to this script's process group does not reach
  # it. Nothing else is inherited: stdin /dev/null, the lock fd 9 closed.
  setsid "${args[@]}" </dev/null >>"$log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$(pidfile "node$i")"
  wait_started "node$i" "$pid" "$log" node_ready "$listen"
  log "node$i ready (pid $pid)"
}

stop_node() { # I [signalled]: SIGTERM (unless already sent) and wait for the drain;
  # 1 when it is still running after the deadline
  local i=$1 pid
  pid=$(running_pid "node$i") || { rm -f "$(pidfile "node$i")"; return 0; }
  if [[ ${2:-} != signalled ]]; then
    log "node$i: SIGTERM (pid $pid), waiting for the drain"
    kill -TERM "$pid" 2>/dev/null || true
  fi
  if ! wait_gone "$pid" "$STOP_DEADLINE_S"; then
    printf 'cluster: error: node%s (pid %s) still running %s s after SIGTERM\n' "$i" "$pid" "$STOP_DEADLINE_S" >&2
    return 1
  fi
  rm -f "$(pidfile "node$i")"
}

# ---------------------------------------------------------------------------------------------
# Packaging workers (ingest): `abr worker` on the jobs in Redis and the shared data directory.
write_worker_args() { # I
  local i=$1 extra=() args
  read -r -a extra <<<"$WORKER_ARGS"
  args=("$BIN" --log info worker --data-dir "$DATA_DIR" --redis "redis://127.0.0.1:$REDIS_PORT/"
    "${extra[@]}")
  (umask 077 && printf '%s\0' "${args[@]}" >"$CLUSTER_DIR/worker$i.args")
}

start_worker() { # I (it must be down); waits for its "abr worker running" line
  local i=$1 log args=() pid from
  [[ -f $CLUSTER_DIR/worker$i.args ]] || die "no $CLUSTER_DIR/worker$i.args: run 'up' first"
  log=$CLUSTER_DIR/worker$i.log
  mapfile -d '' -t args <"$CLUSTER_DIR/worker$i.args"
  [[ -x ${args[0]} ]] || die "${args[0]} is missing or not executable"
  touch "$log"
  from=$(($(stat -c %s "$log") + 1))
  log "starting worker$i"
  setsid "${args[@]}" </dev/null >>"$log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$(pidfile "worker$i")"
  wait_started "worker$i" "$pid" "$log" worker_running "$log" "$from"
  log "worker$i running (pid $pid)"
}

# SIGTERM: a worker hands its running task back ("worker stopped") and exits.
stop_workers() {
  local i pid
  for ((i = 1; i <= JOB_WORKERS; i++)); do
    if pid=$(running_pid "worker$i"); then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 1; i <= JOB_WORKERS; i++)); do stop_escalating "worker$i" TERM:30 KILL:2; done
}

# ---------------------------------------------------------------------------------------------
# nginx.
render_nginx() {
  local servers='' i
  for ((i = 1; i <= NODES; i++)); do
    servers+="${servers:+\\n        }server 127.0.0.1:$(node_port "$i") max_fails=1 fail_timeout=2s;"
  done
  mkdir -p "$CLUSTER_DIR/nginx-tmp"
  # Placeholders are replaced outside comments only (the template's comments name them).
  sed -e "/^[[:space:]]*#/!{s|@DIR@|$CLUSTER_DIR|g; s|@PORT@|$PORT|g; s|@WORKERS@|$WORKERS|g; s|@SERVERS@|$servers|}" \
    "$HERE/nginx.conf.in" >"$CLUSTER_DIR/nginx.conf"
  if grep -v '^[[:space:]]*#' "$CLUSTER_DIR/nginx.conf" | grep '@[A-Z_]*@' >&2; then
    die "unfilled placeholder in $CLUSTER_DIR/nginx.conf"
  fi
}

start_nginx() {
  port_free "$PORT" || die "port $PORT (nginx) is in use; set CLUSTER_PORT"
  render_nginx
  log "starting nginx on 127.0.0.1:$PORT"
  start_nginx_in "$CLUSTER_DIR" "http://127.0.0.1:$PORT/healthz"
}

# nginx: graceful SIGQUIT first (worker_shutdown_timeout is 10 s).
stop_nginx() { stop_escalating nginx QUIT:15 TERM:5 KILL:2; }

stop_redis() { stop_escalating redis TERM:10 KILL:2; }

# ---------------------------------------------------------------------------------------------
# Commands.
components() { # names of the components of this cluster, in start order
  local i
  if [[ $REDIS == 1 ]]; then echo redis; fi
  for ((i = 1; i <= NODES; i++)); do echo "node$i"; done
  for ((i = 1; i <= JOB_WORKERS; i++)); do echo "worker$i"; done
  echo nginx
}

summary_line() {
  local i nodes=''
  for ((i = 1; i <= NODES; i++)); do nodes+="${nodes:+,}http://127.0.0.1:$(node_port "$i")"; done
  printf 'cluster up: nginx=http://127.0.0.1:%s nodes=%s redis=%s workers=%s\n' "$PORT" "$nodes" \
    "$([[ $REDIS == 1 ]] && echo "redis://127.0.0.1:$REDIS_PORT/" || echo none)" "$JOB_WORKERS"
}

UP_STARTED=0
up_failed() {
  local rc=$?
  if ((UP_STARTED && rc != 0)); then
    log "up failed: stopping what was started"
    do_down >/dev/null 2>&1 || true
  fi
}

cmd_up() {
  local c up=() down=() i key
  if load_settings; then
    for c in $(components); do
      if running_pid "$c" >/dev/null; then up+=("$c"); else down+=("$c"); fi
    done
    if ((${#up[@]} && ${#down[@]} == 0)); then
      log "already up (settings from $ENV_FILE; run 'down' first to change them)"
      summary_line
      return 0
    fi
    if ((${#up[@]})); then
      die "cluster partly running (up: ${up[*]}; down: ${down[*]}): use restart-node I, or 'down' then 'up'"
    fi
  fi
  settings_from_env
  [[ -x $BIN ]] || die "$BIN not found or not executable: run 'cargo build --release' (or set ABR_BIN)"
  if [[ $INGEST == 1 ]]; then
    mkdir -p "$ROOT" "$DATA_DIR"
    [[ -n $UPLOAD_TOKENS ]] || log "CLUSTER_UPLOAD_TOKENS is empty: every upload is refused"
  fi
  [[ -d $ROOT ]] || die "CLUSTER_ROOT $ROOT is not a directory (package something first, e.g. bash scripts/demo.sh)"
  command -v curl >/dev/null || die "curl is needed"
  command -v ss >/dev/null || die "ss is needed (apt-get install iproute2)"
  nginx_bin >/dev/null
  # Every port free before anything starts (abr listens with SO_REUSEPORT: it would silently share
  # a port with another abr instead of failing).
  for ((i = 1; i <= NODES; i++)); do
    port_free "$(node_port "$i")" || die "port $(node_port "$i") (node$i) is in use; set CLUSTER_NODE_BASE_PORT"
    [[ $(node_port "$i") != "$PORT" ]] || die "node$i's port $PORT is also CLUSTER_PORT"
  done
  port_free "$PORT" || die "port $PORT (nginx) is in use; set CLUSTER_PORT"
  if [[ $REDIS == 1 ]]; then port_free "$REDIS_PORT" || die "port $REDIS_PORT (redis) is in use; set CLUSTER_REDIS_PORT"; fi

  save_settings
  key=$(session_key)
  UP_STARTED=1
  trap up_failed EXIT
  if [[ $REDIS == 1 ]]; then start_redis; fi
  for ((i = 1; i <= NODES; i++)); do
    write_node_args "$i" "$key"
    start_node "$i"
  done
  for ((i = 1; i <= JOB_WORKERS; i++)); do
    write_worker_args "$i"
    start_worker "$i"
  done
  start_nginx
  UP_STARTED=0
  trap - EXIT
  summary_line
}

do_down() {
  local i rc=0 pid
  stop_nginx
  # Every node drains at the same time (nginx is gone: nothing sends them new requests).
  for ((i = 1; i <= NODES; i++)); do
    if pid=$(running_pid "node$i"); then
      log "node$i: SIGTERM (pid $pid), draining"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 1; i <= NODES; i++)); do stop_node "$i" signalled || rc=1; done
  stop_workers
  stop_redis
  if ((rc)); then
    die "some node did not stop within ${STOP_DEADLINE_S} s; run 'down' again, or kill it (pid in $CLUSTER_DIR)"
  fi
}

cmd_down() {
  if ! load_settings; then
    log "nothing to stop (no $ENV_FILE)"
    return 0
  fi
  do_down
  log "cluster down"
}

cmd_status() {
  local c pid state code i bad=0 any=0 detail
  if ! load_settings; then
    echo "cluster: not running (no $ENV_FILE)"
    return 3
  fi
  for c in $(components); do
    pid=$(read_pid "$c")
    if running_pid "$c" >/dev/null; then state=up any=1; else state=down bad=1; fi
    detail=''
    case $c in
      node*)
        i=${c#node}
        code=$(http_code "http://$(node_listen "$i")/readyz")
        detail="$(node_listen "$i") readyz=$code"
        [[ $code == 200 ]] || bad=1
        ;;
      worker*) detail="abr worker" ;;
      redis)
        code=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)
        detail="127.0.0.1:$REDIS_PORT ping=${code:-none}"
        [[ $code == PONG ]] || bad=1
        ;;
      nginx)
        code=$(http_code "http://127.0.0.1:$PORT/healthz")
        detail="http://127.0.0.1:$PORT healthz=$code"
        [[ $code == 200 ]] || bad=1
        ;;
    esac
    printf '%-7s pid=%-8s %-5s %s\n' "$c" "${pid:--}" "$state" "$detail"
  done
  ((any)) || return 3
  return "$bad"
}

numbered_arg() { # KIND I → I validated as an existing node or worker number
  local kind=$1 n
  [[ ${2:-} =~ ^[0-9]+$ ]] || { printf 'cluster: error: %s number expected\n' "$kind" >&2; exit 2; }
  load_settings || die "no cluster in $CLUSTER_DIR (run 'up' first)"
  if [[ $kind == node ]]; then n=$NODES; else n=$JOB_WORKERS; fi
  (($2 >= 1 && $2 <= n)) || die "$kind $2 does not exist (${kind}s 1..$n)"
}

cmd_kill() { # NAME (node2, worker1): SIGKILL, failure drills
  local name=$1 pid
  pid=$(running_pid "$name") || die "$name is not running"
  log "$name: SIGKILL (pid $pid)"
  kill -KILL "$pid"
  wait_gone "$pid" 5 || die "$name (pid $pid) survived SIGKILL for 5 s"
  # The pid file stays: status shows it as down.
}

cmd_restart() { # NAME: start it again (it must be down)
  local name=$1 pid
  if pid=$(running_pid "$name"); then die "$name is already running (pid $pid)"; fi
  case $name in
    node*) start_node "${name#node}" ;;
    worker*) start_worker "${name#worker}" ;;
  esac
}

cmd_stop_redis() {
  load_settings || die "no cluster in $CLUSTER_DIR (run 'up' first)"
  [[ $REDIS == 1 ]] || die "this cluster runs without Redis"
  running_pid redis >/dev/null || die "redis is not running"
  log "redis: SIGTERM"
  stop_redis
}

cmd_start_redis() {
  local pid
  load_settings || die "no cluster in $CLUSTER_DIR (run 'up' first)"
  [[ $REDIS == 1 ]] || die "this cluster runs without Redis"
  if pid=$(running_pid redis); then die "redis is already running (pid $pid)"; fi
  start_redis
}

cmd_roll() {
  local i pid c
  load_settings || die "no cluster in $CLUSTER_DIR (run 'up' first)"
  for c in $(components); do
    running_pid "$c" >/dev/null || die "$c is down: fix it first (restart-node, or down/up); a roll needs every node up"
  done
  for ((i = 1; i <= NODES; i++)); do
    pid=$(running_pid "node$i")
    stop_node "$i" || die "roll stopped: node$i (pid $pid) did not exit; the other nodes were not touched"
    start_node "$i"
    if ((i < NODES)); then sleep "$ROLL_SETTLE_S"; fi
  done
  log "roll done: $NODES node(s) restarted"
}

# ---------------------------------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  -h | --help | help) usage ;;
  up | down | status | roll) [[ $# -eq 0 ]] || usage ;;
  stop-redis | start-redis) [[ $# -eq 0 ]] || usage ;;
  kill-node | restart-node | kill-worker | restart-worker) [[ $# -eq 1 ]] || usage ;;
  *) printf 'cluster: error: unknown command %s\n' "$cmd" >&2; usage ;;
esac

# One changing command at a time per state dir; status and kill-node do not wait for it.
locking=0
case $cmd in up | down | roll | restart-node | restart-worker | start-redis | stop-redis) locking=1 ;; esac
enter_state_dir "$CLUSTER_DIR" CLUSTER_DIR "$locking" 120 "up, down, roll, restart-node, restart-worker, start-redis, stop-redis"

case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  roll) cmd_roll ;;
  kill-node) numbered_arg node "$1"; cmd_kill "node$1" ;;
  restart-node) numbered_arg node "$1"; cmd_restart "node$1" ;;
  kill-worker) numbered_arg worker "$1"; cmd_kill "worker$1" ;;
  restart-worker) numbered_arg worker "$1"; cmd_restart "worker$1" ;;
  stop-redis) cmd_stop_redis ;;
  start-redis) cmd_start_redis ;;
esac
