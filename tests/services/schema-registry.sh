#!/bin/sh
# A Confluent-compatible schema registry for arrowflow's SchemaRegistryClient tests: Conduit Schema
# Registry v0.2.6 (Go module github.com/conduitio/conduit-schema-registry, Apache-2.0), a Go
# implementation of the Confluent Schema Registry REST API, in-memory store, served by the small
# main in tests/services/go/schema-registry (built with the machine's Go from the Go module proxy).
# Why this one: Karapace (asked for first) is not published on PyPI (pip: "No matching distribution
# found for karapace"; it installs from a git checkout, unreachable here); Confluent's own registry is
# not on Maven Central; Apicurio Registry 2.6.13/3.3.3 do not resolve from Central (their
# apicurio-registry-schema-util-provider is not served). Limits of v0.2.6: no compatibility checks
# (every new version of a subject is accepted), no Kafka-backed storage (nothing survives a restart),
# GET /subjects and GET /schemas/types answer 501 Not Implemented.
# Usage: schema-registry.sh start|stop|status   Env: SCHEMA_REGISTRY_PORT (8081)
# The binary is built into $SERVICES_DIR/schema-registry (rebuilt when main.go or go.mod is newer).
. "$(dirname "$0")/_lib.sh"
svc_init schema-registry
PORT=${SCHEMA_REGISTRY_PORT:-8081}
SRC=$(CDPATH='' cd -- "$(dirname "$0")/go/schema-registry" && pwd)
BIN="$STATE/schema-registry"

build() {
  if [ -x "$BIN" ] && [ "$BIN" -nt "$SRC/main.go" ] && [ "$BIN" -nt "$SRC/go.mod" ] \
    && [ "$BIN" -nt "$SRC/go.sum" ]; then return 0; fi
  command -v go >/dev/null 2>&1 || apt_need golang-go
  say "building Conduit Schema Registry (go build; the first run downloads its modules)"
  (cd "$SRC" && GOFLAGS="-modcacherw -mod=readonly" GOTOOLCHAIN=local go build -o "$BIN.new" .) \
    >"$STATE/build.log" 2>&1 || { tail -n 30 "$STATE/build.log" >&2; die "go build failed (see $STATE/build.log)"; }
  mv "$BIN.new" "$BIN"
}

# answers: the registry really serves its API, not just the port: GET /schemas/ids/0 (an id never
# handed out) gets the Confluent error body {"error_code": 40403, ...}. GET /subjects would be the
# usual probe, but v0.2.6 answers it (and /schemas/types) 501 Not Implemented.
answers() {
  "$PY" -c 'import json,sys,urllib.error,urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/schemas/ids/0", timeout=5)
except urllib.error.HTTPError as e:
    sys.exit(json.loads(e.read()).get("error_code") != 40403)
sys.exit(1)' "$PORT" 2>/dev/null
}

do_start() {
  pre_start "$PORT" || return 0
  _t=$(date +%s)
  build
  start_bg "$BIN" -port "$PORT"
  wait_port "$PORT" 60
  _deadline=$(($(date +%s) + 60))
  until answers; do
    [ "$(date +%s)" -gt "$_deadline" ] && { tail -n 30 "$LOG" >&2; die "GET /schemas/ids/0 did not answer 40403 within 60 s (log: $LOG)"; }
    sleep 0.2
  done
  say "started in $(($(date +%s) - _t)) s (pid $(cat "$PIDF")) http://127.0.0.1:$PORT"
}
do_stop() { generic_stop 10; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
