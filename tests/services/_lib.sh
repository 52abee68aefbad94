# Shared helpers for arrowflow's test-server scripts in this folder (POSIX sh). Sourced, not run.
# Adapted from shared/services/_lib.sh. Every script takes start|stop|status|restart, starts its server on
# 127.0.0.1 only, keeps pid, log and data under $SERVICES_DIR/<name> (default /tmp/arrow-services; wiped at
# each start), waits until the port answers (clear error plus the log tail otherwise), and leaves alone a
# port already served by a process it did not start (start exits 0; up.sh then does not record it).
# Python packages a server needs go into $PYTHON, else the checkout's .venv, else python3.
: "${SERVICES_DIR:=${TMPDIR:-/tmp}/arrow-services}"
_SVC_ROOT=$(CDPATH='' cd -- "$(dirname "$0")/../.." 2>/dev/null && pwd)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$_SVC_ROOT/.venv/bin/python" ]; then PY="$_SVC_ROOT/.venv/bin/python"
else PY=python3; fi

say() { echo "$NAME: $*"; }
die() { echo "$NAME: ERROR: $*" >&2; exit 1; }

svc_init() { # svc_init NAME
  NAME=$1; STATE="$SERVICES_DIR/$NAME"; PIDF="$STATE/pid"; LOG="$STATE/log"
  mkdir -p "$STATE"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_need PKG...: install missing Debian packages; daemons are not auto-started.
apt_need() {
  missing=""
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  say "apt-get install$missing"
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    made_policy=1
  fi
  # Another script (or a person) may be installing at the same time: wait for dpkg's lock, not fail.
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -qq install $missing \
    >"$STATE/apt.log" 2>&1
  rc=$?
  [ -n "$made_policy" ] && as_root rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install$missing failed (see $STATE/apt.log)"
}

# pip_need MODULE PIPSPEC: pip-install PIPSPEC into the current python if MODULE is not importable.
pip_need() {
  "$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null && return 0
  say "pip install $2"
  "$PY" -m pip install -q "$2" >"$STATE/pip.log" 2>&1 || die "pip install $2 failed (see $STATE/pip.log)"
}

# pkg_file MODULE RELPATH: path of a file shipped inside an installed python package.
pkg_file() {
  "$PY" -c "import importlib.util,os,sys; s=importlib.util.find_spec(sys.argv[1]); print(os.path.join(os.path.dirname(s.origin), sys.argv[2]))" "$1" "$2"
}

port_open() { # port_open PORT
  "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" 2>/dev/null
}

alive() { # alive PID (a zombie counts as dead)
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case "$st" in ''|Z*) return 1 ;; esac
}

running() { [ -f "$PIDF" ] && alive "$(cat "$PIDF")"; }

start_bg() { # start_bg CMD ARGS...: run in background, log to $LOG, pid to $PIDF
  nohup "$@" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDF"
}

wait_port() { # wait_port PORT TIMEOUT_S: wait until the port answers; fail clearly on timeout/exit
  i=0
  while ! port_open "$1"; do
    if [ -f "$PIDF" ] && ! alive "$(cat "$PIDF")"; then
      tail -n 30 "$LOG" >&2; die "server exited before port $1 answered (log: $LOG)"
    fi
    i=$((i + 1))
    [ $i -gt $(($2 * 10)) ] && { tail -n 30 "$LOG" >&2; die "port $1 did not answer within $2 s (log: $LOG)"; }
    sleep 0.1
  done
}

stop_pid() { # stop_pid PID [TIMEOUT_S]: TERM, wait, then KILL
  p=$1; t=${2:-15}; i=0
  alive "$p" || return 0
  kill "$p" 2>/dev/null
  while alive "$p"; do
    i=$((i + 1))
    [ $i -gt $((t * 10)) ] && { kill -9 "$p" 2>/dev/null; break; }
    sleep 0.1
  done
}

# Generic start guard: returns 1 (caller should return 0) if already running or port taken.
pre_start() { # pre_start PORT
  if running; then say "already running (pid $(cat "$PIDF"), port $1)"; return 1; fi
  if port_open "$1"; then
    say "port $1 is already served by a process this script did not start; leaving it alone"; return 1
  fi
  rm -rf "$STATE/data"; mkdir -p "$STATE/data"; : >"$LOG"
  return 0
}

generic_stop() {
  if running; then stop_pid "$(cat "$PIDF")" "${1:-15}"; say "stopped"; else say "not running"; fi
  rm -f "$PIDF"
}

generic_status() { # generic_status PORT
  if running; then say "running (pid $(cat "$PIDF"), port $1)"
  elif port_open "$1"; then say "port $1 answers, but not started by this script"
  else say "stopped"; return 3; fi
}

dispatch() { # dispatch "$@" -> calls do_start/do_stop/do_status
  case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    restart) do_stop; do_start ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
  esac
}

# npm_need PKG VERSION PREFIX: check Node.js >= 20, and npm-install PKG@VERSION under PREFIX unless that
# version is there (kept across starts). Install scripts are skipped: the in-memory Node.js servers
# (dynalite, kinesalite) do not need their optional on-disk LevelDB binding built.
npm_need() {
  command -v node >/dev/null || die "node not found ($1 $2 needs Node.js >= 20 and npm)"
  major=$(node -p "process.versions.node.split('.')[0]")
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old ($1 $2 needs >= 20)"
  have=$(node -p "require(process.argv[1]).version" "$3/node_modules/$1/package.json" 2>/dev/null)
  [ "$have" = "$2" ] && return 0
  command -v npm >/dev/null || die "npm not found (needed to install $1 $2)"
  say "npm install $1@$2 into $3"
  mkdir -p "$3"
  npm install --prefix "$3" --no-save --no-audit --no-fund --ignore-scripts --omit=dev "$1@$2" \
    >"$STATE/npm.log" 2>&1 || die "npm install $1@$2 failed (see $STATE/npm.log)"
}
