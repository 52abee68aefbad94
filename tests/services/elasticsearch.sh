#!/bin/sh
# A real Elasticsearch 9.2.2 node (org.elasticsearch:elasticsearch and its transport-netty4 module as
# jars from Maven Central) on the Temurin 25 JDK (Elasticsearch 9 needs Java 21+; OpenJDK 17 cannot
# run it), for the elasticsearch-py suite. 9.2.2 is the newest 9.x whose server AND transport-netty4
# are both served by Maven Central (9.2.3, 9.2.4 and 9.3.x publish the server only); without
# transport-netty4 a node has no HTTP server. Not 8.x: elasticsearch-py 9 sends compatible-with=9,
# which an 8.x server refuses. tests/services/java/elasticsearch/pom.xml resolves the
# jars into ~/.m2; the script puts transport-netty4 and the Netty jars into <home>/modules (with the
# plugin descriptor the module jar carries, minus its modulename: the server runs from the classpath)
# and ElasticsearchLauncher.java (compiled here) starts the node: single-node discovery, no x-pack
# (so no security: plain HTTP, no auth), small heap, data and logs in the state dir. start returns
# once GET /_cluster/health answers green or yellow.
# Maven Central does not serve the distribution's other modules (rest-root, analysis-common,
# lang-painless, mapper-extras, reindex, data-streams; x-pack-core only for some versions, not 9.2.2),
# so this node has the server's built-in features only: no `GET /` banner (405), no scripts, no
# common analyzers beyond the standard ones, no _reindex. The suite uses none of them (its health checks use /_cluster/health).
# Nor are the distribution's native libraries (lib/platform: zstd, vector scoring): the node logs
# "Native methods will be disabled", so whatever needs them (e.g. index.codec: best_compression,
# which uses zstd) is not available here; the suite uses the default codec.
# indices.id_field_data.enabled is turned on (Elasticsearch 8+ has it off and then refuses to sort on
# _id, the sources' default sort; a test turns it off to check the source fails loudly).
# Usage: elasticsearch.sh start|stop|status
# Env: ELASTICSEARCH_PORT (9201, HTTP; 9200 is OpenSearch's) ELASTICSEARCH_TRANSPORT_PORT (9301)
#      ELASTICSEARCH_HEAP (512m) ELASTICSEARCH_START_TIMEOUT (300 s)
#      ELASTICSEARCH_JAVA_HOME (/usr/lib/jvm/temurin-25-jdk-amd64: any JDK 21+)
. "$(dirname "$0")/_lib.sh"
. "$(dirname "$0")/_search_node.sh"
svc_init elasticsearch
PORT=${ELASTICSEARCH_PORT:-9201}
TRANSPORT_PORT=${ELASTICSEARCH_TRANSPORT_PORT:-9301}
HEAP=${ELASTICSEARCH_HEAP:-512m}
START_TIMEOUT=${ELASTICSEARCH_START_TIMEOUT:-300}
JDK=${ELASTICSEARCH_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
JAVA_DIR=$(CDPATH='' cd -- "$(dirname "$0")/java/elasticsearch" && pwd)

do_start() {
  pre_start "$PORT" || return 0
  port_open "$TRANSPORT_PORT" && die "transport port $TRANSPORT_PORT is taken (set ELASTICSEARCH_TRANSPORT_PORT)"
  [ -x "$JDK/bin/javac" ] || die "no JDK 21+ at $JDK (Elasticsearch 9 needs one; set ELASTICSEARCH_JAVA_HOME)"
  resolve_classpath "$JAVA_DIR/pom.xml"
  home="$STATE/data"
  write_node_config "$home" elasticsearch.yml
  # arrowflow's sources sort on _id by default, which Elasticsearch 8+ refuses unless this dynamic
  # cluster setting is on (tests/integration/search turns it off again to check the loud failure).
  echo "indices.id_field_data.enabled: true" >>"$home/config/elasticsearch.yml"
  module="$home/modules/transport-netty4"
  mkdir -p "$module" "$home/plugins"
  # transport-netty4 and Netty go to the module folder (the module's own class loader), the rest to
  # the classpath: a jar in both places is refused by the server's jar-hell check.
  CP=""
  for jar in $(tr ':' ' ' <"$STATE/classpath.txt"); do
    case $(basename "$jar") in
      transport-netty4-*.jar | netty-*.jar) cp "$jar" "$module/" ;;
      *) CP="$CP${CP:+:}$jar" ;;
    esac
  done
  [ -n "$(ls "$module"/transport-netty4-*.jar 2>/dev/null)" ] || die "transport-netty4 is not on the resolved classpath"
  "$PY" - "$module" <<'PY' || die "cannot read the plugin descriptor from transport-netty4's jar"
import glob, sys, zipfile
module = sys.argv[1]
(jar,) = glob.glob(f"{module}/transport-netty4-*.jar")
text = zipfile.ZipFile(jar).read("META-INF/es-plugins/transport-netty4/plugin-descriptor.properties").decode()
lines = [ln for ln in text.splitlines() if not ln.startswith("modulename=")]
open(f"{module}/plugin-descriptor.properties", "w").write("\n".join(lines) + "\n")
PY
  compile_launcher "$JDK/bin/javac" "$JAVA_DIR/ElasticsearchLauncher.java" "$CP"
  # JVM options from the distribution's jvm.options that matter here (Netty without Unsafe tricks
  # or recycler caches, log4j without JMX or its own shutdown hook), native access for Lucene's
  # memory-mapped directories without warnings, and a small heap.
  t0=$(date +%s)
  start_bg "$JDK/bin/java" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:-UsePerfData -XX:+CrashOnOutOfMemoryError \
    -Xss1m -Djava.awt.headless=true -Dfile.encoding=UTF-8 -XX:-OmitStackTraceInFastThrow \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Des.networkaddress.cache.ttl=60 \
    --enable-native-access=ALL-UNNAMED -Djava.io.tmpdir="$home/tmp" \
    -cp "$STATE/classes:$CP" ElasticsearchLauncher "$home"
  wait_healthy "$t0"
}
do_stop() { generic_stop 60; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
