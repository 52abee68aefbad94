# Shared by opensearch.sh and elasticsearch.sh (sourced after _lib.sh and svc_init): one search node
# started in-process by a small Java launcher from jars Maven resolves into ~/.m2. Not run directly.

fail_log() { # fail_log MESSAGE: the server log's tail, then a clear error
  [ -f "$LOG" ] && tail -n 40 "$LOG" >&2
  die "$1 (log: $LOG)"
}

# resolve_classpath POM: the runtime classpath of POM's dependencies into $STATE/classpath.txt.
# Reused while it is newer than POM and every jar on it exists (Maven takes 5-20 s just to confirm it).
resolve_classpath() {
  if [ -s "$STATE/classpath.txt" ] && [ "$STATE/classpath.txt" -nt "$1" ] \
    && [ "$(cat "$STATE/pom.path" 2>/dev/null)" = "$1" ]; then
    missing=0
    for jar in $(tr ':' ' ' <"$STATE/classpath.txt"); do [ -f "$jar" ] || missing=1; done
    [ $missing = 0 ] && return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_need maven
  say "resolving $(basename "$(dirname "$1")") with Maven (the first run downloads ~50 MB of jars into ~/.m2)"
  mvn -q -B -f "$1" dependency:build-classpath -Dmdep.includeScope=runtime \
    -Dmdep.outputFile="$STATE/classpath.txt" >"$STATE/mvn.log" 2>&1 \
    || { tail -n 30 "$STATE/mvn.log" >&2; die "Maven could not resolve $1 (see $STATE/mvn.log)"; }
  echo "$1" >"$STATE/pom.path"
}

# compile_launcher JAVAC SOURCE CLASSPATH: compile the launcher into $STATE/classes.
compile_launcher() {
  rm -rf "$STATE/classes"; mkdir -p "$STATE/classes"
  "$1" -nowarn -d "$STATE/classes" -cp "$3" "$2" >"$STATE/javac.log" 2>&1 \
    || { cat "$STATE/javac.log" >&2; die "javac could not compile $(basename "$2")"; }
}

# write_node_config HOME FILE: FILE (opensearch.yml / elasticsearch.yml) and log4j2.properties in
# HOME/config for a single node on 127.0.0.1:$PORT (transport $TRANSPORT_PORT), data and logs in HOME.
write_node_config() {
  mkdir -p "$1/config" "$1/data" "$1/logs" "$1/tmp"
  cat >"$1/config/$2" <<YAML
cluster.name: arrowflow-test
node.name: arrowflow-$NAME
path.data: $1/data
path.logs: $1/logs
network.host: 127.0.0.1
http.port: $PORT
transport.port: $TRANSPORT_PORT
discovery.type: single-node
# A shared test machine: the disk may be fuller than the 85/90/95 % watermarks, which would make every
# new index red/read-only for reasons that have nothing to do with the suite.
cluster.routing.allocation.disk.threshold_enabled: false
# Two cores shared with other servers.
node.processors: 2
YAML
  cat >"$1/config/log4j2.properties" <<'PROPS'
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
PROPS
}

# health_ok: true once the cluster health answers green or yellow (HTTP opens before shards are ready).
health_ok() {
  "$PY" - "$PORT" <<'PY' >/dev/null 2>&1
import json, sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/_cluster/health?wait_for_status=yellow&timeout=5s"
with urllib.request.urlopen(url, timeout=10) as r:
    sys.exit(0 if json.load(r).get("status") in ("green", "yellow") else 1)
PY
}

# wait_healthy T0: wait until health_ok, failing clearly if the node exits or $START_TIMEOUT passes.
wait_healthy() {
  while ! health_ok; do
    alive "$(cat "$PIDF")" || fail_log "$NAME exited before /_cluster/health answered on port $PORT"
    [ $(($(date +%s) - $1)) -gt "$START_TIMEOUT" ] \
      && fail_log "/_cluster/health did not answer green/yellow on port $PORT within $START_TIMEOUT s"
    sleep 1
  done
  say "started (pid $(cat "$PIDF")) http://127.0.0.1:$PORT transport=$TRANSPORT_PORT in $(($(date +%s) - $1)) s"
}
