#!/bin/sh
# Apache Flume 1.11.0 (the version issue 14 asks for; org.apache.flume:flume-ng-node 1.11.0 from Maven
# Central, with log4j 2.18.0 and netty 4.1.72 as Flume's own distribution ships them), one agent run as
# `org.apache.flume.node.Application -f flume.conf -n agent`, everything on 127.0.0.1.
# Usage: flume.sh start|stop|status|restart
# Env: FLUME_AVRO_PORT (41414)         AvroSource  -> file channel -> file_roll sink, agent/out/avro
#      FLUME_HTTP_PORT (41415)         HTTPSource (JSONHandler) -> file channel -> file_roll, agent/out/http
#      FLUME_REJECT_AVRO_PORT (41416)  AvroSource  -> memory channel of transactionCapacity 10 -> null sink
#      FLUME_REJECT_HTTP_PORT (41417)  HTTPSource  -> the same kind of channel: a request of more than 10
#                                      events never fits, so the agent answers FAILED / HTTP 503 to it
#      FLUME_HEAP (256m)  FLUME_KEEP_DATA (unset; 1 = keep the file channels and rolled files of the last
#                         run, for a restart of a killed agent)
# The file_roll sinks write Flume's avro_event serializer (an Avro container file of records
# {headers: map<string>, body: bytes}, one block per sink transaction), so the tests can read back both
# the headers and the exact body bytes the agent stored; a new file every 10 s keeps the file being
# written small (the tests re-read only files that changed). The file channels make what a source
# acknowledged survive a SIGKILL of the agent. Layout in $SERVICES_DIR/flume: flume.conf, log4j2.xml,
# classpath (+ .key), log (stdout/stderr), flume.log (the agent's log), agent/channel/*, agent/out/{avro,http}.
# `start` returns once Flume itself answers: an event POSTed to the HTTPSource appears in its rolled file
# (source, file channel and file_roll sink all work), and the AvroSource answers an Avro IPC handshake.
. "$(dirname "$0")/_lib.sh"
svc_init flume
AVRO=${FLUME_AVRO_PORT:-41414}; HTTP=${FLUME_HTTP_PORT:-41415}
REJECT_AVRO=${FLUME_REJECT_AVRO_PORT:-41416}; REJECT_HTTP=${FLUME_REJECT_HTTP_PORT:-41417}
HEAP=${FLUME_HEAP:-256m}
POM_DIR="$_SVC_ROOT/tests/services/java/flume"
AGENT="$STATE/agent"

fail_tail() { # fail_tail MESSAGE: the agent's own log holds the stack traces; stdout/stderr the JVM errors
  [ -f "$STATE/flume.log" ] && tail -n 40 "$STATE/flume.log" >&2
  tail -n 20 "$LOG" >&2
  die "$1 (logs: $STATE/flume.log, $LOG)"
}

# wait_file DIR TEXT TIMEOUT_S: until a rolled file in DIR holds TEXT (the sink backs off up to 5 s).
wait_file() {
  i=0
  until grep -rqF -- "$2" "$1" 2>/dev/null; do
    alive "$(cat "$PIDF")" || fail_tail "the agent exited before '$2' reached $1"
    i=$((i + 1))
    [ $i -gt $(($3 * 10)) ] && fail_tail "'$2' was accepted but not written to $1 within $3 s"
    sleep 0.1
  done
}

source_conf() { # source_conf NAME TYPE PORT CHANNEL
  cat <<CONF
agent.sources.$1.type = $2
agent.sources.$1.bind = 127.0.0.1
agent.sources.$1.port = $3
agent.sources.$1.channels = $4
CONF
}

stored_conf() { # stored_conf NAME: file channel NAMECh -> file_roll sink NAMEOut writing agent/out/NAME
  cat <<CONF
agent.channels.$1Ch.type = file
agent.channels.$1Ch.checkpointDir = $AGENT/channel/$1/checkpoint
agent.channels.$1Ch.dataDirs = $AGENT/channel/$1/data
agent.channels.$1Ch.capacity = 1000000
agent.channels.$1Ch.transactionCapacity = 10000
agent.sinks.$1Out.type = file_roll
agent.sinks.$1Out.channel = $1Ch
agent.sinks.$1Out.sink.directory = $AGENT/out/$1
agent.sinks.$1Out.sink.rollInterval = 10
agent.sinks.$1Out.sink.serializer = avro_event
agent.sinks.$1Out.batchSize = 1000
CONF
}

write_conf() {
  {
    echo "agent.sources = avro http rejectAvro rejectHttp"
    echo "agent.channels = avroCh httpCh rejectCh"
    echo "agent.sinks = avroOut httpOut rejectOut"
    source_conf avro avro "$AVRO" avroCh
    source_conf http http "$HTTP" httpCh
    echo "agent.sources.http.handler = org.apache.flume.source.http.JSONHandler"
    stored_conf avro
    stored_conf http
    # A put of more than 10 events in one transaction throws ChannelException: AvroSource answers
    # FAILED, HTTPSource 503. Requests of at most 10 events are accepted (and dropped by the null sink).
    source_conf rejectAvro avro "$REJECT_AVRO" rejectCh
    source_conf rejectHttp http "$REJECT_HTTP" rejectCh
    echo "agent.channels.rejectCh.type = memory"
    echo "agent.channels.rejectCh.capacity = 100"
    echo "agent.channels.rejectCh.transactionCapacity = 10"
    echo "agent.sinks.rejectOut.type = null"
    echo "agent.sinks.rejectOut.channel = rejectCh"
    echo "agent.sinks.rejectOut.batchSize = 10"
  } >"$STATE/flume.conf"
  cat >"$STATE/log4j2.xml" <<XML
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$STATE/flume.log">
      <PatternLayout pattern="%d{ISO8601} %-5p [%t] %c{1}: %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
XML
}

# The classpath Maven resolved for this pom, reused while the pom is unchanged and every jar is still
# in ~/.m2 (Maven itself takes 10-25 s to start here; a restart of the agent should not pay that).
resolve_classpath() {
  command -v java >/dev/null || die "java not found (OpenJDK 17 is expected)"
  key=$(cksum <"$POM_DIR/pom.xml")
  if [ -s "$STATE/classpath" ] && [ "$(cat "$STATE/classpath.key" 2>/dev/null)" = "$key" ] \
    && tr ':' '\n' <"$STATE/classpath" | while read -r jar; do [ -f "$jar" ] || exit 1; done; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Maven 3.8 is expected)"
  rm -f "$STATE/classpath.key"
  say "resolving flume-ng-node 1.11.0 with Maven (cached in ~/.m2)"
  mvn -q -B -f "$POM_DIR/pom.xml" dependency:build-classpath -Dmdep.outputFile="$STATE/classpath" \
    >"$STATE/mvn.log" 2>&1 || { tail -n 30 "$STATE/mvn.log" >&2; die "Maven could not resolve Flume (log: $STATE/mvn.log)"; }
  echo "$key" >"$STATE/classpath.key"
}

do_start() {
  pre_start "$AVRO" || return 0
  for p in "$HTTP" "$REJECT_AVRO" "$REJECT_HTTP"; do
    port_open "$p" && die "port $p is already taken by another process (set FLUME_*_PORT)"
  done
  resolve_classpath
  [ "${FLUME_KEEP_DATA:-}" = 1 ] || rm -rf "$AGENT"
  mkdir -p "$AGENT/out/avro" "$AGENT/out/http" "$STATE/data/tmp"
  write_conf
  : >"$STATE/flume.log"
  begin=$(date +%s)
  start_bg java -Xms32m -Xmx"$HEAP" -XX:+UseSerialGC -Djava.io.tmpdir="$STATE/data/tmp" \
    -Dlog4j.configurationFile="$STATE/log4j2.xml" -cp "$(cat "$STATE/classpath")" \
    org.apache.flume.node.Application --no-reload-conf -f "$STATE/flume.conf" -n agent
  for p in "$AVRO" "$HTTP" "$REJECT_AVRO" "$REJECT_HTTP"; do wait_port "$p" 180; done
  probe="flume.sh probe $$ $(date +%s%N)"
  "$PY" - "$HTTP" "$probe http" <<'PY' || fail_tail "the HTTPSource refused the probe event"
import json, sys, urllib.request
body = json.dumps([{"headers": {"probe": "flume.sh"}, "body": sys.argv[2]}]).encode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/", body, {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as answer:
    sys.exit(answer.status != 200)
PY
  # Avro IPC (Avro specification, "Handshake") over Netty framing: a handshake from an unknown client
  # (clientHash and serverHash of 16 zero bytes, no protocol, no meta) is answered NONE with the
  # server's protocol, so an answer naming AvroSourceProtocol means Avro's responder is serving.
  "$PY" - "$AVRO" <<'PY' || fail_tail "the AvroSource did not answer an Avro IPC handshake"
import socket, struct, sys
shake = bytes(16) + b"\x00" + bytes(16) + b"\x00"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60) as conn:
    conn.sendall(struct.pack(">iii", 1, 1, len(shake)) + shake)
    answer = b""
    while b"AvroSourceProtocol" not in answer:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit(1)
        answer += chunk
PY
  wait_file "$AGENT/out/http" "$probe http" 120
  # Flume starts without a component whose configuration it rejects: that is a failed start here.
  grep -q 'removed due to an error' "$STATE/flume.log" && fail_tail "the agent dropped part of flume.conf"
  say "started (pid $(cat "$PIDF")) in $(($(date +%s) - begin)) s: avro=$AVRO http=$HTTP reject-avro=$REJECT_AVRO reject-http=$REJECT_HTTP (out: $AGENT/out)"
}
do_stop() { generic_stop 30; }
do_status() { generic_status "$AVRO"; }
dispatch "$@"
