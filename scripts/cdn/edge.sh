#!/usr/bin/env bash
# scripts/cdn/edge.sh up|down|status|purge PREFIX
#
# A caching edge on 127.0.0.1 (docs/CDN.md): one nginx with proxy_cache + slice
# (scripts/cdn/nginx.conf.in) in front of `abr serve` nodes, or in front of the cluster's nginx
# (scripts/cluster/cluster.sh). The nginx it starts is recorded by pid in the state dir and
# stopped by that pid; nothing is stopped by name.
#
#   up              render the config, check it (nginx -t), start nginx and wait for it to answer;
#                   prints a last line `edge up: http://127.0.0.1:PORT origins=...`. Origins that
#                   do not answer /healthz are reported, not fatal (the edge serves its cache).
#                   No-op when the edge already runs.
#   down            SIGQUIT (graceful), then SIGTERM, SIGKILL if it lingers; the cache stays on
#                   disk and is used again by the next `up`. Fine when nothing runs.
#   status          the pid, the edge's /_edge/healthz and each origin's /healthz.
#                   Exit 0 all up, 1 something down, 3 nothing runs.
#   purge PREFIX    delete every cached object whose key (the request path, plus the slice range
#                   for media) starts with PREFIX, e.g. `/movie/` after deleting ROOT/movie, or
#                   `/movie/hls/720p/index.m3u8`; prints how many files went. Works while running:
#                   the next request for a purged object goes to the origin.
#
# Settings (environment, read by `up`; later commands reuse what `up` recorded in
# $EDGE_DIR/edge.env, so only EDGE_DIR matters for them):
#   EDGE_DIR             state dir: pid, logs, generated config, the cache (default target/cdn)
#   EDGE_PORT            the edge's public port (8090)
#   EDGE_ORIGINS         comma-separated host:port of the origins: `abr serve` nodes, or the
#                        cluster's nginx (127.0.0.1:8080, the default of both `abr serve` and
#                        cluster.sh)
#   EDGE_CACHE_MAX_SIZE  disk budget of the cache, an nginx size (1g); least recently used
#                        entries are evicted beyond it
#   EDGE_WORKERS         nginx worker processes (2)
# Relative paths given in the environment are taken from the current directory; the defaults
# from the repository root.
#
# Logs (appended): $EDGE_DIR/nginx-access.log (JSON lines with the cache status of each
# request), nginx-error.log, nginx.out (nginx's own output).
# Exit status: 0 success, 1 failure, 2 usage error; status: 3 when nothing runs.
set -euo pipefail

CALLER_PWD=$PWD
cd "$(dirname "$0")/../.."
REPO=$PWD
HERE=$REPO/scripts/cdn
TAG=edge
# shellcheck source=scripts/lib/daemon.sh
. "$REPO/scripts/lib/daemon.sh"

EDGE_DIR=$(abs_env "${EDGE_DIR:-}" target/cdn)
ENV_FILE=$EDGE_DIR/edge.env

settings_from_env() {
  PORT=${EDGE_PORT:-8090}
  ORIGINS=${EDGE_ORIGINS:-127.0.0.1:8080}
  CACHE_MAX_SIZE=${EDGE_CACHE_MAX_SIZE:-1g}
  WORKERS=${EDGE_WORKERS:-2}
  [[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT <= 65535)) || die "EDGE_PORT must be a port (1-65535), got '$PORT'"
  [[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 1)) || die "EDGE_WORKERS must be at least 1, got '$WORKERS'"
  [[ $CACHE_MAX_SIZE =~ ^[0-9]+[kKmMgG]?$ ]] || die "EDGE_CACHE_MAX_SIZE must be an nginx size (e.g. 512m, 10g), got '$CACHE_MAX_SIZE'"
  local o
  IFS=, read -r -a ORIGIN_LIST <<<"$ORIGINS"
  ((${#ORIGIN_LIST[@]})) || die "EDGE_ORIGINS lists no origin"
  for o in "${ORIGIN_LIST[@]}"; do
    [[ $o =~ ^[A-Za-z0-9.-]+:[0-9]+$ || $o =~ ^\[[0-9A-Fa-f:]+\]:[0-9]+$ ]] ||
      die "EDGE_ORIGINS entry '$o' must be host:port"
  done
}

save_settings() { save_vars "$ENV_FILE" PORT ORIGINS CACHE_MAX_SIZE WORKERS; }

load_settings() { # 1 when no edge was ever started from this state dir
  [[ -f $ENV_FILE ]] || return 1
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  IFS=, read -r -a ORIGIN_LIST <<<"$ORIGINS"
}

pidfile() { echo "$EDGE_DIR/$1.pid"; }
is_ours() { # NAME PID
  local cl
  proc_alive "$2" || return 1
  cl=$(cmdline_of "$2")
  [[ $1 == nginx && $cl == *"nginx: master process"* && $cl == *"$EDGE_DIR/nginx.conf"* ]]
}

# nginx's module directory (Debian: /usr/lib/nginx/modules), where the headers-more module is.
modules_dir() {
  local d
  d=$("$(nginx_bin)" -V 2>&1 | tr ' ' '\n' | sed -n 's/^--modules-path=//p')
  echo "${d:-/usr/lib/nginx/modules}"
}

render_nginx() {
  local servers='' o modules
  modules=$(modules_dir)
  [[ -f $modules/ngx_http_headers_more_filter_module.so ]] ||
    die "nginx's headers-more module is not in $modules (apt-get install libnginx-mod-http-headers-more-filter)"
  for o in "${ORIGIN_LIST[@]}"; do
    servers+="${servers:+\\n        }server $o max_fails=1 fail_timeout=2s;"
  done
  mkdir -p "$EDGE_DIR/nginx-tmp" "$EDGE_DIR/cache"
  # Placeholders are replaced outside comments only (the template's comments name them).
  sed -e "/^[[:space:]]*#/!{s|@DIR@|$EDGE_DIR|g; s|@PORT@|$PORT|g; s|@WORKERS@|$WORKERS|g; s|@USER@|$(id -un)|g; s|@CACHE_MAX_SIZE@|$CACHE_MAX_SIZE|g; s|@MODULES@|$modules|g; s|@SERVERS@|$servers|}" \
    "$HERE/nginx.conf.in" >"$EDGE_DIR/nginx.conf"
  if grep -v '^[[:space:]]*#' "$EDGE_DIR/nginx.conf" | grep '@[A-Z_]*@' >&2; then
    die "unfilled placeholder in $EDGE_DIR/nginx.conf"
  fi
}

origin_report() { # prints each origin's /healthz; 1 when one does not answer 200
  local o code bad=0
  for o in "${ORIGIN_LIST[@]}"; do
    code=$(http_code "http://$o/healthz")
    printf 'origin  %-21s healthz=%s\n' "$o" "$code"
    [[ $code == 200 ]] || bad=1
  done
  return "$bad"
}

cmd_up() {
  local pid
  if load_settings && pid=$(running_pid nginx); then
    log "already up (pid $pid; settings from $ENV_FILE; run 'down' first to change them)"
    echo "edge up: http://127.0.0.1:$PORT origins=$ORIGINS"
    return 0
  fi
  settings_from_env
  command -v curl >/dev/null || die "curl is needed"
  command -v ss >/dev/null || die "ss is needed (apt-get install iproute2)"
  port_free "$PORT" || die "port $PORT is in use; set EDGE_PORT"
  save_settings
  render_nginx
  log "starting nginx on 127.0.0.1:$PORT in front of $ORIGINS"
  start_nginx_in "$EDGE_DIR" "http://127.0.0.1:$PORT/_edge/healthz"
  origin_report >&2 || log "warning: an origin does not answer /healthz (the edge serves what it has cached)"
  echo "edge up: http://127.0.0.1:$PORT origins=$ORIGINS"
}

cmd_down() {
  if ! load_settings; then
    log "nothing to stop (no $ENV_FILE)"
    return 0
  fi
  # Graceful first: workers finish their responses (worker_shutdown_timeout 10 s).
  stop_escalating nginx QUIT:15 TERM:5 KILL:2
  log "edge down"
}

cmd_status() {
  local pid code state=down bad=0
  if ! load_settings; then
    echo "edge: not running (no $ENV_FILE)"
    return 3
  fi
  pid=$(read_pid nginx)
  if running_pid nginx >/dev/null; then state=up; else bad=1; fi
  code=$(http_code "http://127.0.0.1:$PORT/_edge/healthz")
  [[ $code == 200 ]] || bad=1
  printf 'nginx   pid=%-8s %-5s http://127.0.0.1:%s healthz=%s\n' "${pid:--}" "$state" "$PORT" "$code"
  origin_report || bad=1
  [[ $state == up ]] || return 3
  return "$bad"
}

# The cache files whose key starts with PREFIX are deleted. nginx writes the key in each file's
# header as a line `KEY: <key>`; a deleted file is a miss on the next request (nginx fetches it
# again), whatever its shared-memory entry says.
cmd_purge() {
  local prefix=$1 re n=0 f
  [[ $prefix == /* ]] || die "purge: PREFIX must be a path starting with / (e.g. /movie/), got '$prefix'"
  load_settings || die "no edge in $EDGE_DIR (run 'up' first)"
  [[ -d $EDGE_DIR/cache ]] || { echo "purged 0 files"; return 0; }
  # The prefix as a basic regular expression matched from the start of the key.
  re=$(printf '%s' "$prefix" | sed 's/[][\.*^$]/\\&/g')
  while IFS= read -r -d '' f; do
    rm -f -- "$f" && n=$((n + 1))
  done < <(find "$EDGE_DIR/cache" -type f ! -name '*.[0-9]*' -print0 |
    xargs -0 -r grep -l -a -m1 -Z -e "^KEY: $re" -- 2>/dev/null || true)
  log "purged $n cached files under $prefix"
  echo "purged $n files"
}

# ---------------------------------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  -h | --help | help) usage ;;
  up | down | status) [[ $# -eq 0 ]] || usage ;;
  purge) [[ $# -eq 1 ]] || usage ;;
  *) printf 'edge: error: unknown command %s\n' "$cmd" >&2; usage ;;
esac

# One changing command at a time per state dir.
locking=0
if [[ $cmd == up || $cmd == down ]]; then locking=1; fi
enter_state_dir "$EDGE_DIR" EDGE_DIR "$locking" 60 "up, down"

case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  purge) cmd_purge "$1" ;;
esac
