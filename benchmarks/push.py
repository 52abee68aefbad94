"""Workload ``http-push``: rows/s an :class:`HttpPushSource` ingests from 8 concurrent HTTP clients.

Each client keeps one keep-alive connection and POSTs pre-built NDJSON bodies of 1,000 rows
(``id`` int64, ``name`` string, ``value`` float64) while one reader thread drains the source; a
round ends when every row is read back. Methods:

* ``arrowflow HttpPushSource, NDJSON``: bodies parsed by ``pyarrow.json`` in the server threads.
* ``arrowflow HttpPushSource, Arrow IPC``: the same rows as Arrow IPC stream bodies.
* ``stdlib ThreadingHTTPServer + json.loads``: the baseline a user would write: a handler that
  ``json.loads`` every line and appends the dicts to a list (no Arrow), same clients.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.ipc as ipc

from .core import Method, Prepared, RunConfig, Target, Workload, register

CLIENTS = 8
ROWS_PER_BODY = 1000


def _bodies(total: int) -> tuple[bytes, bytes]:
    rows = [{"id": i, "name": f"name-{i}", "value": i * 0.5} for i in range(ROWS_PER_BODY)]
    ndjson = "".join(json.dumps(r) + "\n" for r in rows).encode()
    sink = io.BytesIO()
    table = pa.Table.from_pylist(rows)
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return ndjson, sink.getvalue()


def _run_clients(address: tuple[str, int], body: bytes, ctype: str, bodies_per_client: int) -> None:
    def client() -> None:
        conn = http.client.HTTPConnection(*address, timeout=60)
        conn.connect()
        # http.client sends headers and body separately: without TCP_NODELAY each request waits
        # for a delayed ACK.
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        while sent < bodies_per_client:
            conn.request("POST", "/", body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                sent += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def setup(config: RunConfig) -> Prepared:
    from arrowflow.connectors.push import HttpPushSource

    per_client = max(1, config.rows // (CLIENTS * ROWS_PER_BODY))
    total = per_client * CLIENTS * ROWS_PER_BODY
    ndjson, arrow = _bodies(total)

    def run_source(body: bytes, ctype: str) -> int:
        src = HttpPushSource(capacity=50_000, accept_timeout=1.0)
        addr = src.start()
        reader = src.open(src.plan()[0])
        got = 0

        def drain() -> None:
            nonlocal got
            while got < total:
                b = reader.read_batch(65536, 0.5)
                if b is not None:
                    got += b.num_rows

        d = threading.Thread(target=drain)
        d.start()
        _run_clients(addr, body, ctype, per_client)
        d.join()
        src.close()
        assert got == total
        return total

    def run_baseline() -> int:
        rows: list[dict] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                parsed = [json.loads(line) for line in data.splitlines() if line]
                with lock:
                    rows.extend(parsed)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        _run_clients(("127.0.0.1", server.server_address[1]), ndjson, "application/x-ndjson", per_client)
        server.shutdown()
        server.server_close()
        assert len(rows) == total
        return total

    methods = {
        "arrowflow HttpPushSource, NDJSON": Method(run=lambda: run_source(ndjson, "application/x-ndjson")),
        "arrowflow HttpPushSource, Arrow IPC": Method(
            run=lambda: run_source(arrow, "application/vnd.apache.arrow.stream")
        ),
        "stdlib ThreadingHTTPServer + json.loads": Method(run=run_baseline, target=Target(min_speedup=1.0)),
    }
    return Prepared(methods=methods, bytes_per_row=len(ndjson) / ROWS_PER_BODY, note=f"{CLIENTS} clients")


WORKLOAD = register(
    Workload(
        name="http-push",
        description=f"HttpPushSource ingest, {CLIENTS} concurrent keep-alive clients, 1k-row bodies",
        setup=setup,
        reference="arrowflow HttpPushSource, NDJSON",
        idiomatic=("stdlib ThreadingHTTPServer + json.loads",),
    )
)
