# Shell helpers shared by scripts/cluster/cluster.sh and scripts/cdn/edge.sh (sourced; bash).
# The sourcing script sets TAG (its name in messages), CALLER_PWD and REPO, and defines
# `pidfile NAME` (its pid file path) and `is_ours NAME PID` (whether PID is still the process it
# started as NAME).
#
# Processes. A pid file is trusted only while its process is alive and still the one started
# here (its command line is checked), so a recycled pid is never signalled.

# The script's header comment (from line 2 to `set -euo`) is its usage text.
usage() { sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf '[%s %(%H:%M:%S)T] %s\n' "$TAG" -1 "$*" >&2; }
die() { printf '%s: error: %s\n' "$TAG" "$*" >&2; exit 1; }

# Settings recorded by `up` for the later commands: VAR=value lines (shell-quoted), mode 600,
# written atomically.
save_vars() { # FILE VAR...
  local file=$1 v
  shift
  (
    umask 077
    {
      echo "# written by ${0#"$REPO"/} up; read by its other commands"
      for v in "$@"; do
        printf '%s=%q\n' "$v" "${!v}"
      done
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
  )
}

# Checks a state dir name (it goes into generated configs), sets the usual signal exits and,
# for commands that change things, takes the dir's lock on fd 9 (closed in every process
# started here) so one such command runs at a time.
enter_state_dir() { # DIR VARNAME LOCK(0/1) WAIT_S WHAT
  [[ $1 =~ ^[-A-Za-z0-9._/+=:,@%~]+$ ]] ||
    die "$2 '$1' must use only letters, digits and ._/+=:,@%~- (it goes into generated configs)"
  trap 'exit 130' INT
  trap 'exit 143' HUP TERM
  if [[ $3 == 1 ]]; then
    mkdir -p "$1"
    exec 9>"$1/.lock"
    if command -v flock >/dev/null; then
      flock -w "$4" 9 || die "another $TAG.sh ($5) holds $1/.lock"
    fi
  fi
}

# An absolute path: relative values from the environment are relative to the caller's directory.
abs_env() { # VALUE DEFAULT_RELATIVE_TO_REPO
  local p
  if [[ -n $1 ]]; then
    if [[ $1 == /* ]]; then p=$1; else p=$CALLER_PWD/$1; fi
  else
    p=$REPO/$2
  fi
  realpath -m -- "$p"
}

read_pid() { # NAME → pid or nothing
  local f p
  f=$(pidfile "$1")
  [[ -f $f ]] || return 0
  read -r p <"$f" || true
  [[ $p =~ ^[0-9]+$ ]] && echo "$p"
  return 0
}
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }
running_pid() { # NAME → its pid when running, else nothing (exit 1)
  local p
  p=$(read_pid "$1")
  [[ -n $p ]] && is_ours "$1" "$p" && { echo "$p"; return 0; }
  return 1
}

port_free() { [[ -z $(ss -Hltn "( sport = :$1 )" 2>/dev/null) ]]; }

# Running (not exited): a process that exited but was not reaped yet (zombie) counts as gone.
proc_alive() { # PID
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  if [[ -z $st || $st == Z || $st == X ]]; then
    # A child of this shell (started by this invocation) is reaped here; others by their parent.
    wait "$1" 2>/dev/null || true
    return 1
  fi
}

wait_gone() { # PID DEADLINE_S → 1 when still running at the deadline
  local pid=$1 end=$((SECONDS + $2))
  while proc_alive "$pid"; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
  return 0
}

http_code() { # URL → status code, 000 when no answer
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

tail_log() { # FILE
  if [[ -s $1 ]]; then
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n 20 "$1" >&2
    printf -- '---\n' >&2
  fi
}

nginx_bin() {
  local n
  n=$(command -v nginx || true)
  [[ -z $n && -x /usr/sbin/nginx ]] && n=/usr/sbin/nginx
  [[ -n $n ]] || die "nginx not found (apt-get install nginx)"
  echo "$n"
}

# Starts nginx on the rendered DIR/nginx.conf (`-p DIR`, errors in DIR/nginx-error.log, its own
# output in DIR/nginx.out), then waits for the master's pid file (`running_pid nginx`) and for
# HEALTH_URL to answer 200.
start_nginx_in() { # DIR HEALTH_URL
  local dir=$1 health=$2 nginx pid code end
  local conf=$1/nginx.conf err=$1/nginx-error.log out=$1/nginx.out
  nginx=$(nginx_bin)
  if ! "$nginx" -t -q -c "$conf" -p "$dir" -e "$err" >>"$out" 2>&1; then
    tail_log "$out"
    tail_log "$err"
    die "nginx -t rejected $conf"
  fi
  rm -f "$(pidfile nginx)"
  # nginx daemonizes: it returns once its master runs in the background and has written the pid.
  "$nginx" -c "$conf" -p "$dir" -e "$err" </dev/null >>"$out" 2>&1 9>&- || {
    tail_log "$out"
    tail_log "$err"
    die "nginx failed to start (log: $err)"
  }
  end=$((SECONDS + 10))
  until pid=$(running_pid nginx); do
    ((SECONDS < end)) || { tail_log "$err"; die "nginx wrote no pid file $(pidfile nginx)"; }
    sleep 0.1
  done
  while :; do
    code=$(http_code "$health")
    [[ $code == 200 ]] && break
    if ((SECONDS >= end)); then
      tail_log "$err"
      die "GET $health answered ${code/#000/nothing} (log: $err)"
    fi
    sleep 0.1
  done
  log "nginx ready (pid $pid)"
}

stop_escalating() { # NAME SIGNAL:WAIT_S... — each signal in turn until the recorded process is gone
  local name=$1 pid step
  shift
  pid=$(running_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
  for step in "$@"; do
    log "$name: SIG${step%%:*} (pid $pid)"
    kill -"${step%%:*}" "$pid" 2>/dev/null || true
    wait_gone "$pid" "${step#*:}" && break
  done
  rm -f "$(pidfile "$name")"
}
