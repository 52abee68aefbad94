#!/bin/sh
# Apache Cassandra 5.0.9 (org.apache.cassandra:cassandra-all from Maven Central, the newest 5.0.x served
# there when this was written), one node on 127.0.0.1, run as org.apache.cassandra.service.CassandraDaemon
# in the foreground on OpenJDK 17 from the classpath that tests/services/java/cassandra/pom.xml resolves
# into ~/.m2 (no tarball, no bin/cassandra). The script writes a minimal cassandra.yaml (16 vnodes, small
# memtables and caches, Murmur3Partitioner) and a logback.xml into the state dir, and returns once a CQL
# query really answers (SELECT release_version FROM system.local through the Python driver).
# Usage: cassandra.sh start|stop|status
# Env: CASSANDRA_PORT (9042, CQL native protocol) CASSANDRA_STORAGE_PORT (7000, internode)
#      CASSANDRA_JMX_PORT (7199, local JMX for nodetool) CASSANDRA_HEAP (768m) CASSANDRA_START_TIMEOUT (300 s)
# Data, commit log, hints and logs live under $SERVICES_DIR/cassandra (wiped at each start).
. "$(dirname "$0")/_lib.sh"
svc_init cassandra
PORT=${CASSANDRA_PORT:-9042}
STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-7000}
JMX_PORT=${CASSANDRA_JMX_PORT:-7199}
HEAP=${CASSANDRA_HEAP:-768m}
START_TIMEOUT=${CASSANDRA_START_TIMEOUT:-300}
POM="$(dirname "$0")/java/cassandra/pom.xml"

fail_log() { # fail_log MESSAGE: stop what was started, print the server log's tail, fail clearly
  running && stop_pid "$(cat "$PIDF")" 30
  rm -f "$PIDF"
  [ -f "$LOG" ] && tail -n 40 "$LOG" >&2
  die "$1 (log: $LOG)"
}

write_config() {
  d="$STATE/data"
  cat >"$STATE/conf/cassandra.yaml" <<YAML
cluster_name: arrowflow-test
# 16 vnodes: the ring has 16 token ranges, so the source's token-range splits follow real ownership.
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $PORT
start_native_transport: true
data_file_directories:
  - $d/data
commitlog_directory: $d/commitlog
saved_caches_directory: $d/saved_caches
hints_directory: $d/hints
cdc_raw_directory: $d/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
# 8 MiB segments: the largest mutation and CQL message the node takes is half that, 4 MiB (with the
# default 32 MiB segments, 16 MiB); the sink's batch size test relies on that limit.
commitlog_segment_size: 8MiB
# Small memory footprint: other JVMs share this machine.
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 4MiB
file_cache_size: 32MiB
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
concurrent_compactors: 1
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
# Tests create and drop many small tables: no snapshot per DROP/TRUNCATE.
auto_snapshot: false
YAML
  cat >"$STATE/conf/logback.xml" <<XML
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
XML
}

# cql_ready: true once a CQL query answers (the native port opens before the node can serve queries).
# Run from the state dir: a folder named "cassandra" in the caller's directory would shadow the driver.
cql_ready() {
  (cd "$STATE" && "$PY" - "$PORT" <<'PY' >"$STATE/cql_ready.log" 2>&1
import sys
from cassandra.cluster import Cluster
cluster = Cluster(["127.0.0.1"], port=int(sys.argv[1]), connect_timeout=5)
try:
    row = cluster.connect().execute("SELECT release_version FROM system.local", timeout=10).one()
    sys.exit(0 if row and row[0] else 1)
finally:
    cluster.shutdown()
PY
  )
}

# resolve_classpath: $STATE/classpath.txt from the POM through Maven (~100 jars into ~/.m2 on the first
# run), reused while the POM is unchanged and every jar is still there (Maven alone takes ~15 s).
resolve_classpath() {
  sum=$(cksum <"$POM")
  if [ -f "$STATE/classpath.txt" ] && [ "$(cat "$STATE/classpath.sum" 2>/dev/null)" = "$sum" ] \
    && tr ':' '\n' <"$STATE/classpath.txt" | while read -r jar; do [ -f "$jar" ] || exit 1; done; then
    return 0
  fi
  say "resolving cassandra-all with Maven (the first run downloads ~100 jars into ~/.m2)"
  mvn -q -B -f "$POM" dependency:build-classpath -Dmdep.includeScope=runtime \
    -Dmdep.outputFile="$STATE/classpath.txt" >"$STATE/mvn.log" 2>&1 \
    || { tail -n 30 "$STATE/mvn.log" >&2; die "Maven could not resolve cassandra-all (see $STATE/mvn.log)"; }
  echo "$sum" >"$STATE/classpath.sum"
}

do_start() {
  pre_start "$PORT" || return 0
  port_open "$STORAGE_PORT" && die "storage port $STORAGE_PORT is taken (set CASSANDRA_STORAGE_PORT)"
  command -v java >/dev/null 2>&1 || apt_need openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_need maven
  (cd "$STATE" && pip_need cassandra cassandra-driver) || exit 1
  mkdir -p "$STATE/conf" "$STATE/data/tmp" "$STATE/logs"
  resolve_classpath
  CP=$(cat "$STATE/classpath.txt")
  JAMM=$(tr ':' '\n' <"$STATE/classpath.txt" | grep '/jamm-[0-9.]*\.jar$' | head -n 1)
  [ -n "$JAMM" ] || die "jamm is not on the resolved classpath (see $STATE/classpath.txt)"
  write_config
  # JVM options: the JPMS opens/exports of Cassandra 5.0's conf/jvm17-server.options (Java 17 refuses
  # Cassandra's reflective access without them), jamm as agent for memtable sizing (as bin/cassandra
  # does), and start-up shortcuts for a lone seed node that never joins a ring (no gossip wait, no
  # superuser delay, a fixed memtable row overhead instead of measuring it: ~10 s on a loaded machine).
  start_bg java -Xms"$HEAP" -Xmx"$HEAP" -Xss256k -XX:+UseG1GC -XX:MaxGCPauseMillis=300 \
    -XX:+CrashOnOutOfMemoryError -XX:ErrorFile="$STATE/hs_err_pid%p.log" -XX:-UsePerfData \
    -XX:MaxDirectMemorySize=512m \
    -javaagent:"$JAMM" \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    -Djava.net.preferIPv4Stack=true -Djava.io.tmpdir="$STATE/data/tmp" \
    -Djava.rmi.server.hostname=127.0.0.1 -Dcassandra.jmx.local.port="$JMX_PORT" \
    -Dcassandra-foreground=yes \
    -Dcassandra.config="file://$STATE/conf/cassandra.yaml" \
    -Dcassandra.storagedir="$STATE/data" -Dcassandra.logdir="$STATE/logs" \
    -Dlogback.configurationFile="$STATE/conf/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.superuser_setup_delay_ms=0 \
    -Dcassandra.memtable.row_overhead_size=180 -Dchronicle.analytics.disable=true \
    -cp "$CP" org.apache.cassandra.service.CassandraDaemon
  t0=$(date +%s)
  while ! cql_ready; do
    alive "$(cat "$PIDF")" || fail_log "Cassandra exited before CQL answered on port $PORT"
    [ $(($(date +%s) - t0)) -gt "$START_TIMEOUT" ] && {
      tail -n 5 "$STATE/cql_ready.log" >&2
      fail_log "CQL did not answer on port $PORT within $START_TIMEOUT s"
    }
    sleep 1
  done
  say "started (pid $(cat "$PIDF")) cql=127.0.0.1:$PORT storage=$STORAGE_PORT jmx=$JMX_PORT in $(($(date +%s) - t0)) s"
}
do_stop() { generic_stop 60; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
