#!/bin/sh
# A three-broker Apache Kafka 4.4.0 cluster for the failover tests: the same broker as kafka.sh (see
# there for the version and how it is fetched), three JVMs on 127.0.0.1, each a broker and a KRaft
# controller (a three-voter quorum), default.replication.factor=3 and min.insync.replicas=2 for every
# topic including the internal ones, so acks=all survives the loss of any one broker. PLAINTEXT only.
# Usage: kafka-cluster.sh start|stop|status|restart
#   start    when no node runs: fresh (wipes the data, formats, starts the three nodes); when some run:
#            starts the missing ones on their data (after a test SIGKILLed one). Returns once the
#            three brokers are registered and a produce/consume round trip with acks=all works.
#   restart  stops every node and starts them again on the same data
# Ports: KAFKA_CLUSTER_PORT (9192): node N (1..3) serves clients on KAFKA_CLUSTER_PORT+N-1 and its
#        controller on KAFKA_CLUSTER_PORT+N+2 (9192-9197 by default).
# Other env: KAFKA_CLUSTER_HEAP (384m per node), KAFKA_START_TIMEOUT (180 s).
# State: $SERVICES_DIR/kafka-cluster/node-N/{server.properties,data,log,pid}.
. "$(dirname "$0")/_lib.sh"
svc_init kafka-cluster
. "$(dirname "$0")/_kafka.sh"
BASE=${KAFKA_CLUSTER_PORT:-9192}
KAFKA_HEAP=${KAFKA_CLUSTER_HEAP:-384m}
NODES="1 2 3"

node_dir() { echo "$STATE/node-$1"; }
node_port() { echo $((BASE + $1 - 1)); }
node_running() { [ -f "$(node_dir "$1")/pid" ] && alive "$(cat "$(node_dir "$1")/pid")"; }
bootstrap() { echo "127.0.0.1:$(node_port 1),127.0.0.1:$(node_port 2),127.0.0.1:$(node_port 3)"; }

write_config() { # write_config NODE
  d=$(node_dir "$1")
  voters="1@127.0.0.1:$((BASE + 3)),2@127.0.0.1:$((BASE + 4)),3@127.0.0.1:$((BASE + 5))"
  cat >"$d/server.properties" <<PROPS
node.id=$1
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(node_port "$1"),CONTROLLER://127.0.0.1:$((BASE + $1 + 2))
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$1")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
# A SIGKILLed broker is fenced (and its partitions get new leaders) after this, not the default 9 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
PROPS
  kafka_common_props >>"$d/server.properties"
  # After the common 4 (a later key wins): with a power of two, a group id that extends a
  # transactional id by a suffix (the sink's commit markers) hashes to a partition fixed by the
  # transactional id's, so whether one node coordinates both would depend on the leader layout.
  printf 'offsets.topic.num.partitions=5\ntransaction.state.log.num.partitions=5\n' >>"$d/server.properties"
}

start_node() { # start_node NODE: start a node on its (formatted) data
  d=$(node_dir "$1")
  kafka_start_node "$d/server.properties" "$d/log" "$d/pid"
}

wait_ready() {
  for n in $NODES; do
    PIDF="$(node_dir "$n")/pid"; LOG="$(node_dir "$n")/log"
    wait_port "$(node_port "$n")" "$KAFKA_START_TIMEOUT"
  done
  kafka_ready --bootstrap "$(bootstrap)" --brokers 3 \
    || { for n in $NODES; do tail -n 15 "$(node_dir "$n")/log" >&2; done; die "no produce/consume round trip"; }
}

do_start() {
  t0=$(date +%s)
  up=""
  for n in $NODES; do node_running "$n" && up="$up $n"; done
  if [ "$up" = " 1 2 3" ]; then say "already running (nodes$up)"; return 0; fi
  if [ -z "$up" ]; then
    if port_open "$BASE"; then
      say "port $BASE is already served by a process this script did not start; leaving it alone"
      return 0
    fi
    for p in $(seq $((BASE + 1)) $((BASE + 5))); do
      port_open "$p" && die "port $p is taken (KAFKA_CLUSTER_PORT uses $BASE-$((BASE + 5)))"
    done
    kafka_classpath
    id=$(kafka_cluster_id)
    for n in $NODES; do
      d=$(node_dir "$n")
      rm -rf "$d"; mkdir -p "$d/data"; : >"$d/log"
      write_config "$n"
      kafka_format "$d/server.properties" "$d/format.log" "$id"
    done
    for n in $NODES; do start_node "$n"; done
  else
    start_missing
  fi
  wait_ready
  say "started in $(($(date +%s) - t0)) s: bootstrap.servers=$(bootstrap)" \
    "(pids $(for n in $NODES; do printf '%s ' "$(cat "$(node_dir "$n")/pid")"; done))"
}

start_missing() { # start every node that is not running, on its data
  kafka_classpath
  for n in $NODES; do
    node_running "$n" && continue
    [ -f "$(node_dir "$n")/data/meta.properties" ] || die "node $n has no formatted data: stop, then start"
    say "starting node $n on its data"
    start_node "$n"
  done
}

do_stop() {
  any=""
  for n in $NODES; do
    if node_running "$n"; then stop_pid "$(cat "$(node_dir "$n")/pid")" 60 & any=1; fi
  done
  wait
  for n in $NODES; do rm -f "$(node_dir "$n")/pid"; done
  if [ -n "$any" ]; then say "stopped"; else say "not running"; fi
}

do_status() {
  up=""
  for n in $NODES; do node_running "$n" && up="$up $n"; done
  if [ -n "$up" ]; then say "running (nodes$up; bootstrap.servers=$(bootstrap))"
  elif port_open "$BASE"; then say "port $BASE answers, but not started by this script"
  else say "stopped"; return 3; fi
}

case "${1:-}" in
  restart) do_stop; t0=$(date +%s); start_missing; wait_ready; say "restarted in $(($(date +%s) - t0)) s" ;;
  *) dispatch "$@" ;;
esac
