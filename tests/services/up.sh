#!/bin/sh
# Start the named test servers, reusing any that already answer, and record which ones THIS call started.
# Usage: up.sh [--record FILE] NAME...      (NAME = a script in this folder without .sh, e.g. kafka redis)
#        up.sh [--record FILE] -f LIST      (names from a file: one per line, '#' comments)
# The record (default $SERVICES_DIR/started.list) gets one line per server this call started, so that
# `down.sh --record FILE` stops exactly those and leaves alone servers that were already running (a system
# server, or one a developer started by hand). A name is recorded BEFORE its start so that a start that
# fails half-way is still cleaned up. Exits non-zero (after printing the script's error) if a start fails.
set -u
HERE=$(CDPATH='' cd -- "$(dirname "$0")" && pwd)
: "${SERVICES_DIR:=${TMPDIR:-/tmp}/arrow-services}"
RECORD="$SERVICES_DIR/started.list"
NAMES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=$2; shift 2 ;;
    -f) NAMES="$NAMES $(sed -e 's/#.*//' "$2" | tr '\n' ' ')"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) NAMES="$NAMES $1"; shift ;;
  esac
done
mkdir -p "$SERVICES_DIR" "$(dirname "$RECORD")"
touch "$RECORD"
for name in $NAMES; do
  script="$HERE/$name.sh"
  [ -f "$script" ] || { echo "up.sh: no service script $script" >&2; exit 2; }
  # status: 0 = running (ours from an earlier call, or a foreign server on the port), 3 = stopped.
  if sh "$script" status >/dev/null 2>&1; then
    echo "up.sh: $name already answers; reusing it (will not stop it)"
    continue
  fi
  echo "$name" >>"$RECORD"
  sh "$script" start || { echo "up.sh: starting $name failed" >&2; exit 1; }
done
exit 0
