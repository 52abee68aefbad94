#!/bin/sh
# Kinesis-compatible in-memory server: kinesalite 3.3.3 (npm "kinesalite", Node.js; Kinesis JSON and CBOR
# API on one port), by the author of dynalite. NOT Kinesis: the stand-in for the Kinesis sink/source
# tests, conformance suite and the aws-kinesis-sink benchmark, in place of moto, whose Kinesis loses
# records put concurrently into one shard (moto's Shard.put_record numbers a record "last + 1" without
# a lock) and never closes a split shard. kinesalite serialises every PutRecords of a stream, numbers
# records like Kinesis and implements SplitShard/MergeShards (the parent closes, writes go to the
# children, GetRecords on a drained closed shard ends its iterator).
# Where it differs from Kinesis (what a test may NOT rely on it for):
# * no throughput limits: never ProvisionedThroughputExceededException (tests inject it with a proxy);
# * per-request limits: 500 records and Data <= 1 MiB per record are checked (the 1 MiB excludes the
#   partition key, which Kinesis counts), the 5 MiB per-request total is NOT (only a 7 MiB HTTP body);
# * one account-wide shard limit (--shardLimit, set very high here), not per-stream quotas;
# * JSON (botocore) and CBOR (the Java SDK) both answer; errors are 400 + {"__type": ...} as in Kinesis.
# Streams are ACTIVE at once (createStreamMs/deleteStreamMs/updateStreamMs 0), data in memory only.
# kinesalite's CLI listens on every interface; the script starts it through a small Node.js launcher
# bound to 127.0.0.1, which also keeps the server alive when a client resets a request (kinesalite
# rethrows that error and would exit: the fault tests reset requests on purpose). Needs Node.js >= 20 and npm. Installs into $SERVICES_DIR/kinesalite/npm (kept
# across starts). Waits until ListStreams answers.
# Usage: kinesalite.sh start|stop|status   Env: KINESALITE_PORT (4568), KINESALITE_VERSION (3.3.3)
# boto3: endpoint_url=http://127.0.0.1:$KINESALITE_PORT, any region, any access key/secret.
. "$(dirname "$0")/_lib.sh"
svc_init kinesalite
PORT=${KINESALITE_PORT:-4568}
VERSION=${KINESALITE_VERSION:-3.3.3}
PREFIX="$STATE/npm"
INDEX="$PREFIX/node_modules/kinesalite/index.js"

# list_streams: exit 0 once a signed-looking ListStreams gets a 200 JSON answer (kinesalite checks that
# an Authorization header is present and well formed, not the signature).
list_streams() {
  "$PY" - "$PORT" <<'EOF' 2>/dev/null
import json, sys, urllib.request
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/", data=b"{}", method="POST",
    headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "X-Amz-Date": "20260101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=host, Signature=0",
    },
)
with urllib.request.urlopen(req, timeout=2) as r:
    sys.exit(0 if "StreamNames" in json.loads(r.read()) else 1)
EOF
}

do_start() {
  pre_start "$PORT" || return 0
  npm_need kinesalite "$VERSION" "$PREFIX"
  start_bg node -e '
    const [index, port] = process.argv.slice(1)
    const opts = {createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100000}
    // kinesalite rethrows a request stream error (index.js: req.on("error", err => { throw err })),
    // so a client resetting its connection mid-request would kill the server: log that one and go on.
    process.on("uncaughtException", (err) => {
      if (err && err.code === "ECONNRESET") return console.error("a client reset its request:", err.message)
      console.error(err)
      process.exit(1)
    })
    const server = require(index)(opts).listen(+port, "127.0.0.1", () =>
      console.log("Listening at http://127.0.0.1:" + port, JSON.stringify(opts)))
  ' "$INDEX" "$PORT"
  wait_port "$PORT" 30
  i=0
  until list_streams; do
    running || { tail -n 30 "$LOG" >&2; die "server exited before ListStreams answered (log: $LOG)"; }
    i=$((i + 1))
    [ $i -gt 300 ] && { tail -n 30 "$LOG" >&2; die "ListStreams did not answer within 30 s (log: $LOG)"; }
    sleep 0.1
  done
  say "started (pid $(cat "$PIDF")) endpoint_url=http://127.0.0.1:$PORT"
}
do_stop() { generic_stop 10; }
do_status() { generic_status "$PORT"; }
dispatch "$@"
