# Shared helpers of kafka.sh (one broker) and kafka-cluster.sh (three brokers): Apache Kafka from Maven
# Central, KRaft combined mode (each process is a broker and a controller). POSIX sh, sourced after
# _lib.sh and svc_init. See kafka.sh for the version and why.
KAFKA_POM="$(dirname "$0")/java/kafka/pom.xml"
KAFKA_READY="$(dirname "$0")/java/kafka/ready.py"
KAFKA_HEAP=${KAFKA_HEAP:-512m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-180}
# The SCRAM user the SASL listener knows (created at format time with the broker's own StorageTool).
KAFKA_SCRAM_USER=arrowflow
KAFKA_SCRAM_PASSWORD=arrowflow-secret

kafka_fail() { # kafka_fail LOGFILE MESSAGE: the log's tail, then a clear error
  [ -f "$1" ] && tail -n 40 "$1" >&2
  die "$2 (log: $1)"
}

# kafka_classpath: resolve kafka_2.13 and its runtime dependencies into ~/.m2 (a download on the first
# run) and set CP. The resolved classpath is reused while it is newer than the POM and every jar on it
# is still there (Maven takes ~8 s even when ~/.m2 is warm; a broker restart should not wait for it).
kafka_classpath() {
  command -v java >/dev/null 2>&1 || apt_need openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || apt_need maven
  _cpf="$STATE/classpath.txt"
  if [ -s "$_cpf" ] && [ "$_cpf" -nt "$KAFKA_POM" ] \
    && tr ':' '\n' <"$_cpf" | while read -r j || [ -n "$j" ]; do [ -f "$j" ] || exit 1; done; then
    CP=$(cat "$_cpf"); return 0
  fi
  say "resolving org.apache.kafka:kafka_2.13 with Maven (the first run downloads ~45 jars into ~/.m2)"
  mvn -q -B -f "$KAFKA_POM" dependency:build-classpath -Dmdep.includeScope=runtime \
    -Dmdep.outputFile="$_cpf" >"$STATE/mvn.log" 2>&1 \
    || { rm -f "$_cpf"; tail -n 30 "$STATE/mvn.log" >&2; die "Maven could not resolve kafka_2.13 (see $STATE/mvn.log)"; }
  CP=$(cat "$_cpf")
}

# kafka_java LOG CLASS ARGS...: run a Kafka main class in the foreground (StorageTool), output to LOG.
kafka_java() {
  _log=$1; shift
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$CP" "$@" >>"$_log" 2>&1
}

# kafka_jvm_opts: the broker JVM's options. A small heap (other JVMs share this machine); Kafka's own
# G1 settings (bin/kafka-run-class.sh); slf4j-simple at INFO, the chatty request loggers at WARN.
kafka_jvm_opts() {
  echo "-Xms128m -Xmx$KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError" \
    "-XX:-UsePerfData -Djava.awt.headless=true" \
    "-Dorg.slf4j.simpleLogger.showDateTime=true" \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
    "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn" \
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient=warn"
}

# kafka_common_props: the broker settings both scripts share (appended to a server.properties). Small
# internal topics and no initial rebalance delay, so the first group and the first transaction of a
# test do not wait for 50 partitions to be created or for 3 s of join window. No time retention: tests
# write records with fixed timestamps years in the past (which a retention would delete at once).
kafka_common_props() {
  cat <<PROPS
process.roles=broker,controller
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
num.partitions=4
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.ms=-1
log.segment.bytes=67108864
log.cleaner.dedupe.buffer.size=8388608
PROPS
}

# kafka_cluster_id: a new random cluster id (a UUID in Kafka's URL-safe base64 form). Like Kafka's own
# Uuid.randomUuid, never one that starts with "-": the storage tool's argument parser reads
# "--cluster-id -x..." as a missing value (1 start in 64 failed that way).
kafka_cluster_id() {
  "$PY" -c 'import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)'
}

# kafka_format PROPS LOG CLUSTER_ID [--add-scram ...]: write meta.properties into a fresh node's log dir.
kafka_format() {
  _props=$1; _log=$2; _id=$3; shift 3
  kafka_java "$_log" kafka.tools.StorageTool format --config "$_props" --cluster-id "$_id" "$@" \
    || kafka_fail "$_log" "kafka-storage format failed"
}

# kafka_start_node PROPS LOG PIDFILE: start one broker in the background.
kafka_start_node() {
  # shellcheck disable=SC2046
  nohup java $(kafka_jvm_opts) -Dkafka.logs.dir="$(dirname "$2")" -cp "$CP" kafka.Kafka "$1" \
    >>"$2" 2>&1 </dev/null &
  echo $! >"$3"
}

# kafka_ready ARGS...: wait until a produce/consume round trip works (java/kafka/ready.py ARGS).
kafka_ready() {
  pip_need confluent_kafka confluent-kafka
  "$PY" "$KAFKA_READY" --timeout "$KAFKA_START_TIMEOUT" "$@"
}
