#!/bin/sh
# Stop the test servers that up.sh recorded as started (in reverse order), then delete the record.
# Usage: down.sh [--record FILE]     (default $SERVICES_DIR/started.list)
#        down.sh NAME...             (stop these by name, whoever started them through these scripts)
# Servers that up.sh found already running are not in the record and are never stopped. Always exits 0
# unless a name has no script: a stop that fails must not hide the test result of the caller.
set -u
HERE=$(CDPATH='' cd -- "$(dirname "$0")" && pwd)
: "${SERVICES_DIR:=${TMPDIR:-/tmp}/arrow-services}"
RECORD="$SERVICES_DIR/started.list"
NAMES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) NAMES="$NAMES $1"; shift ;;
  esac
done
FROM_RECORD=""
if [ -z "$NAMES" ]; then
  [ -f "$RECORD" ] || exit 0
  # reverse order, each name once
  NAMES=$(awk 'NF && !seen[$1]++ { a[n++] = $1 } END { for (i = n - 1; i >= 0; i--) print a[i] }' "$RECORD")
  FROM_RECORD=1
fi
for name in $NAMES; do
  script="$HERE/$name.sh"
  [ -f "$script" ] || { echo "down.sh: no service script $script" >&2; exit 2; }
  sh "$script" stop || echo "down.sh: stopping $name failed (continuing)" >&2
done
[ -n "$FROM_RECORD" ] && rm -f "$RECORD"
exit 0
