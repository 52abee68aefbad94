#!/bin/sh
# DynamoDB-compatible in-memory server: dynalite (npm "dynalite", Node.js; DynamoDB JSON API on one port).
# NOT DynamoDB and not moto: used by the DynamoDB sink benchmark (it answers a 25-item BatchWriteItem
# several times faster than moto) and by the test that checks it is compatible for what arrowflow uses.
# Needs Node.js >= 20 and npm. Installs into $SERVICES_DIR/dynalite/npm (kept across starts; data is
# in memory and lost at stop). Tables are ACTIVE at once (createTableMs/deleteTableMs/updateTableMs 0).
# Usage: dynalite.sh start|stop|status   Env: DYNALITE_PORT (4567), DYNALITE_VERSION (4.0.0)
# boto3: endpoint_url=http://127.0.0.1:$DYNALITE_PORT, any region, any access key/secret.
. "$(dirname "$0")/_lib.sh"
svc_init dynalite
PORT=${DYNALITE_PORT:-4567}
VERSION=${DYNALITE_VERSION:-4.0.0}
PREFIX="$STATE/npm"
CLI="$PREFIX/node_modules/dynalite/cli.js"

do_start() {
  pre_start "$PORT" || return 0
  npm_need dynalite "$VERSION" "$PREFIX"
  start_bg node "$CLI" --host 127.0.0.1 --port "$PORT" --createTableMs 0 --deleteTableMs 0 --updateTableMs 0
  wait_port "$PORT" 30
  say "started (pid $(cat "$PIDF")) endpoint_url=http://127.0.0.1:$PORT"
}
do_stop() { generic_stop 10; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
