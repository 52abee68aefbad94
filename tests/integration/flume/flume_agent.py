"""The real Apache Flume 1.11 agent of ``tests/services/flume.sh``, seen from the tests: its addresses
and what its file_roll sinks wrote.

The agent (config in the script's header) has an AvroSource and an HTTPSource (JSONHandler), each
into its own file channel and its own file_roll sink writing Flume's ``avro_event`` serializer: Avro
container files of ``{headers: map<string>, body: bytes}`` records, one block per sink transaction,
a new file every 10 s, under ``$SERVICES_DIR/flume/agent/out/{avro,http}``. One channel and one
sink per source keep the events of a source in the order the source accepted them.

Tests share the agent, so every event a test sends carries a ``run`` header with a fresh id and a
test reads back only its own run. :meth:`FlumeAgent.run_events` sends an end marker after the run
(with the suite's own clients, not arrowflow) and waits until the agent wrote it: by then every
event of the run accepted before it is written too (same channel, same sink, FIFO), so the test
compares the complete output, not a prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fastavro
from flume_test_server import Event, append_batch, post_json_events

from arrowflow.writer import BatchingConfig

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "flume.sh"
#: The suite's batching: Flume's 100 events per request, one request in flight (so events arrive in
#: write order), a partial request after 0.2 s, short backoffs.
FAST = BatchingConfig(
    max_request_rows=100,
    max_in_flight=1,
    max_time_in_buffer=0.2,
    initial_backoff=0.01,
    max_backoff=0.2,
    max_attempts=10,
)
PROTOCOLS = ("avro", "http")
RUN = "run"
END = "arrowflow-test-end"


@dataclass(frozen=True)
class Stored:
    """One event as the agent wrote it."""

    headers: dict[str, str]
    body: bytes


@dataclass
class _Parsed:
    stamp: tuple[int, int]
    events: list[Stored]
    truncated: bool


def _read_container(path: Path) -> tuple[list[Stored], bool]:
    """The events of one rolled file, and whether it ends in a partial block (a killed agent's)."""
    events: list[Stored] = []
    with path.open("rb") as f:
        try:
            for block in fastavro.block_reader(f):
                events.extend(Stored(dict(r["headers"]), bytes(r["body"])) for r in block)
        except (EOFError, ValueError):  # fastavro: a cut header or block
            return events, True
    return events, False


@dataclass
class FlumeAgent:
    """Addresses of the agent's sources (same env vars and defaults as the script) and its output."""

    avro_port: int = int(os.environ.get("FLUME_AVRO_PORT", "41414"))
    http_port: int = int(os.environ.get("FLUME_HTTP_PORT", "41415"))
    reject_avro_port: int = int(os.environ.get("FLUME_REJECT_AVRO_PORT", "41416"))
    reject_http_port: int = int(os.environ.get("FLUME_REJECT_HTTP_PORT", "41417"))
    state: Path = (
        Path(os.environ.get("SERVICES_DIR", os.environ.get("TMPDIR", "/tmp") + "/arrow-services")) / "flume"
    )
    _cache: dict[Path, _Parsed] = field(default_factory=dict)

    def address(self, protocol: str, *, reject: bool = False) -> str:
        """The FlumeSink ``address`` of the AvroSource / HTTPSource (``reject``: the ones whose
        channel takes at most 10 events per transaction, so a bigger request always fails)."""
        if protocol == "avro":
            return f"127.0.0.1:{self.reject_avro_port if reject else self.avro_port}"
        return f"http://127.0.0.1:{self.reject_http_port if reject else self.http_port}/"

    # -- what the agent wrote ------------------------------------------------------------------------

    def stored(self, protocol: str) -> tuple[list[Stored], list[Path]]:
        """Every event the file_roll sink of ``protocol`` wrote, in order, and the finished files of
        the running agent that end in a partial block (there should be none).

        A file_roll sink names its files ``<its start in ms>-<n>``. A partial block is allowed at
        the end of the file being written (the sink may be writing a block right now) and of a
        file of an earlier, killed, agent process: its events were not committed in the file
        channel, so the restarted agent wrote them again. Unchanged files are not re-read.
        """
        out = self.state / "agent" / "out" / protocol
        named = []
        for path in out.iterdir():
            started, _, n = path.name.partition("-")
            named.append(((int(started), int(n)), path))
        named.sort()
        events: list[Stored] = []
        truncated: list[Path] = []
        for (started, _), path in named:
            st = path.stat()
            parsed = self._cache.get(path)
            if parsed is None or parsed.stamp != (st.st_size, st.st_mtime_ns):
                found, cut = _read_container(path)
                parsed = _Parsed((st.st_size, st.st_mtime_ns), found, cut)
                self._cache[path] = parsed
            events.extend(parsed.events)
            if parsed.truncated and started == named[-1][0][0] and path != named[-1][1]:
                truncated.append(path)
        return events, truncated

    def events_of(self, protocol: str, run: str) -> list[Stored]:
        """The events of one run written so far, without the ``run`` header and the end marker."""
        events, _ = self.stored(protocol)
        return [
            Stored({k: v for k, v in e.headers.items() if k != RUN}, e.body)
            for e in events
            if e.headers.get(RUN) == run and END not in e.headers
        ]

    def run_events(self, protocol: str, run: str, *, timeout: float = 180.0) -> list[Stored]:
        """All events of ``run``: sends an end marker through ``protocol`` and waits until the agent
        wrote it (see the module docstring). Fails if a file of the running agent ends in a
        partial block."""
        marker = [Event({RUN: run, END: "1"}, END.encode())]  # sent by the suite's own clients
        if protocol == "avro":
            assert append_batch(self.avro_port, marker) == "OK"
        else:
            assert post_json_events(self.http_port, marker) == 200
        deadline = time.monotonic() + timeout
        while True:
            events, truncated = self.stored(protocol)
            if any(e.headers.get(RUN) == run and END in e.headers for e in events):
                assert not truncated, f"partial blocks at the end of {truncated}"
                return self.events_of(protocol, run)
            assert time.monotonic() < deadline, f"the agent did not write run {run} within {timeout} s"
            time.sleep(0.2)

    # -- the agent's process -------------------------------------------------------------------------

    def pid(self) -> int:
        """The agent's process id, from the script's pid file."""
        pid_file = self.state / "pid"
        assert pid_file.exists(), (
            f"no {pid_file}: the agent on port {self.avro_port} was not started by tests/services/flume.sh "
            f"with SERVICES_DIR={self.state.parent}, so this test cannot restart it"
        )
        return int(pid_file.read_text().strip())

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid(), sig)

    def kill(self, *, timeout: float = 60.0) -> None:
        """SIGKILL the agent and wait until the process is gone."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            assert time.monotonic() < deadline, f"agent pid {pid} survived SIGKILL for {timeout} s"
            time.sleep(0.05)

    def start(self, *, keep_data: bool = True) -> None:
        """Start the agent with the script (same ports and SERVICES_DIR as this process); with
        ``keep_data`` its file channels and rolled files survive, as after a machine restart."""
        env = {**os.environ, "SERVICES_DIR": str(self.state.parent)}
        if keep_data:
            env["FLUME_KEEP_DATA"] = "1"
        done = subprocess.run(
            ["sh", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"flume.sh start failed:\n{done.stdout}\n{done.stderr}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def new_run() -> str:
    return uuid.uuid4().hex
