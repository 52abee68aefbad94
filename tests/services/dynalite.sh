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

installed_version() {
  node -p "require(process.argv[1]).version" "$PREFIX/node_modules/dynalite/package.json" 2>/dev/null
}

do_start() {
  pre_start "$PORT" || return 0
  command -v node >/dev/null || die "node not found (dynalite $VERSION needs Node.js >= 20 and npm)"
  major=$(node -p "process.versions.node.split('.')[0]")
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old (dynalite $VERSION needs >= 20)"
  if [ "$(installed_version)" != "$VERSION" ]; then
    command -v npm >/dev/null || die "npm not found (needed to install dynalite $VERSION)"
    say "npm install dynalite@$VERSION into $PREFIX"
    mkdir -p "$PREFIX"
    # In memory only: the on-disk LevelDB binding's install script is not needed (it ships prebuilds).
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --ignore-scripts --omit=dev \
      "dynalite@$VERSION" >"$STATE/npm.log" 2>&1 || die "npm install dynalite@$VERSION failed (see $STATE/npm.log)"
  fi
  start_bg node "$CLI" --host 127.0.0.1 --port "$PORT" --createTableMs 0 --deleteTableMs 0 --updateTableMs 0
  wait_port "$PORT" 30
  say "started (pid $(cat "$PIDF")) endpoint_url=http://127.0.0.1:$PORT"
}
do_stop() { generic_stop 10; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
