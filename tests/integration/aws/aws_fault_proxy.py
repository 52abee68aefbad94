"""An HTTP proxy in front of moto or kinesalite that records requests and injects AWS failures.

The proxy forwards every request to the server ("moto" below) unchanged, except where a rule says
otherwise:

* ``fail_records[target] = (count, code)``: in the next ``count`` PutRecords / PutRecordBatch
  requests, every third record (positions 0, 3, 6, ...) is *removed* from the body forwarded to
  moto and reported back as failed with ``code`` (FailedRecordCount / FailedPutCount set), exactly
  as Kinesis / Firehose report partial failures: those records really were not written.
* ``unprocessed[count]``: in the next ``count`` BatchWriteItem requests, every other item is
  withheld from moto and returned in ``UnprocessedItems``.
* ``end_closed_shards = True``: emulate real Kinesis for closed (split / merged) shards, which
  moto keeps returning iterators for: a GetRecords on a shard that ListShards reported closed
  (``EndingSequenceNumber``) that returns no records gets ``NextShardIterator: null``. (kinesalite
  ends such iterators itself.) The shard of a GetRecords call is the one whose GetShardIterator /
  GetRecords answer handed out the iterator (else decoded from moto's token).
* ``throttle[target] = count``: the next ``count`` requests to ``target`` are answered with HTTP 400
  ``ProvisionedThroughputExceededException`` without reaching moto.

Every request is recorded as ``(target, body bytes, parsed JSON)`` so tests can assert the limits
(records per request, bytes per request) that moto itself does not enforce.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int, Any]] = []
        self.fail_records: dict[str, tuple[int, str]] = {}
        self.unprocessed = 0
        self.throttle: dict[str, int] = {}
        self.end_closed_shards = False
        self.closed_shards: set[str] = set()
        #: ShardIds in GetRecords requests, in order (see _iterator_shard).
        self.get_records_shards: list[str] = []
        #: iterator token -> ShardId, from GetShardIterator / GetRecords answers.
        self.iterator_shards: dict[str, str] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_PUT(self) -> None:
                proxy._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def recorded(self, target: str) -> list[Any]:
        """Parsed bodies of the recorded requests to ``target`` (e.g. ``"Kinesis_20131202.PutRecords"``)."""
        with self.lock:
            return [body for t, _, body in self.requests if t == target]

    def recorded_sizes(self, target: str) -> list[int]:
        with self.lock:
            return [size for t, size, _ in self.requests if t == target]

    # -- internals ---------------------------------------------------------------------------------

    def _take(self, table: dict[str, Any], key: str) -> Any:
        with self.lock:
            value = table.get(key)
            if not value:
                return None
            if isinstance(value, tuple):
                count, code = value
                table[key] = (count - 1, code) if count > 1 else None
                return code
            table[key] = value - 1
            return True

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        target = h.headers.get("X-Amz-Target", "")
        parsed: Any = None
        if target and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self.lock:
            self.requests.append((target, len(body), parsed))
        short = target.split(".")[-1]
        if target and self._take(self.throttle, short):
            payload = json.dumps(
                {"__type": "ProvisionedThroughputExceededException", "message": "injected throttling"}
            ).encode()
            self._reply(h, 400, {"Content-Type": "application/x-amz-json-1.1"}, payload)
            return
        rewrite = None
        if short in ("PutRecords", "PutRecordBatch") and parsed is not None:
            code = self._take(self.fail_records, short)
            if code:
                records = parsed["Records"]
                dropped = set(range(0, len(records), 3))
                parsed = dict(parsed, Records=[r for i, r in enumerate(records) if i not in dropped])
                body = json.dumps(parsed).encode()
                rewrite = ("records", short, len(records), dropped, code)
        elif short == "BatchWriteItem" and parsed is not None:
            with self.lock:
                hit = self.unprocessed > 0
                if hit:
                    self.unprocessed -= 1
            if hit:
                ((table, reqs),) = parsed["RequestItems"].items()
                withheld = [r for i, r in enumerate(reqs) if i % 2 == 0]
                kept = [r for i, r in enumerate(reqs) if i % 2 == 1]
                if kept:
                    body = json.dumps({**parsed, "RequestItems": {table: kept}}).encode()
                    rewrite = ("unprocessed", table, withheld)
                else:  # nothing left to forward: answer ourselves
                    payload = json.dumps({"UnprocessedItems": {table: withheld}}).encode()
                    self._reply(h, 200, {"Content-Type": "application/x-amz-json-1.0"}, payload)
                    return
        status, headers, answer = self._forward(h, body)
        if short == "ListShards" and status == 200:
            for shard in json.loads(answer).get("Shards", []):
                if shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"):
                    with self.lock:
                        self.closed_shards.add(shard["ShardId"])
        if target.startswith("Kinesis_") and short == "GetShardIterator" and status == 200:
            it = json.loads(answer).get("ShardIterator")
            if it and parsed is not None:
                with self.lock:
                    self.iterator_shards[it] = parsed["ShardId"]
        if target.startswith("Kinesis_") and short == "GetRecords" and status == 200 and parsed is not None:
            shard_id = self._iterator_shard(parsed["ShardIterator"])
            following = json.loads(answer).get("NextShardIterator")
            with self.lock:
                self.get_records_shards.append(shard_id)
                if following:
                    self.iterator_shards[following] = shard_id
                closed = self.end_closed_shards and shard_id in self.closed_shards
            if closed:
                data = json.loads(answer)
                if not data.get("Records"):
                    data.pop("NextShardIterator", None)
                    answer = json.dumps(data).encode()
        if rewrite is not None and status == 200:
            data = json.loads(answer)
            if rewrite[0] == "records":
                _, op, n, dropped, code = rewrite
                key, count_key = (
                    ("Records", "FailedRecordCount")
                    if op == "PutRecords"
                    else ("RequestResponses", "FailedPutCount")
                )
                ok = iter(data[key])
                merged = []
                for i in range(n):
                    if i in dropped:
                        merged.append({"ErrorCode": code, "ErrorMessage": "injected"})
                    else:
                        merged.append(next(ok))
                data[key] = merged
                data[count_key] = data.get(count_key, 0) + len(dropped)
            else:
                _, table, withheld = rewrite
                un = data.setdefault("UnprocessedItems", {})
                un.setdefault(table, []).extend(withheld)
            answer = json.dumps(data).encode()
        self._reply(h, status, headers, answer)

    def _iterator_shard(self, iterator: str) -> str:
        """The shard an iterator reads: remembered from the GetShardIterator / GetRecords answer
        that handed it out (kinesalite's tokens are encrypted), else decoded from moto's token
        (base64 of ``stream:shard:sequence``)."""
        with self.lock:
            known = self.iterator_shards.get(iterator)
        if known is not None:
            return known
        import base64

        return base64.b64decode(iterator).decode().split(":")[1]

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in ("content-length", "host")}
            headers["Content-Length"] = str(len(body))
            headers["Host"] = h.headers.get("Host", "")
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            out = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("content-length", "x-amz-crc32", "transfer-encoding", "connection")
            }
            return resp.status, out, answer
        finally:
            conn.close()

    def _reply(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
