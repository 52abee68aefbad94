"""MongoSink (``mode="replace"`` keyed on ``_id``) through SIGKILL crashes, against SecantusDB.

A DataGen -> MongoSink pipeline process (tests/integration/crash/db_crash_pipeline.py) is killed from
this process mid-stream (exactly three kills with data in flight, one while acknowledged rows were not
yet checkpointed) and resumed from its checkpoint; the collection must hold exactly the generated
rows: nothing lost, no ``_id`` twice, every field as generated. Keyed replaces make "no ``_id`` twice"
hold by themselves, so a change stream records the server's writes: an ``insert`` per new ``_id``, a
``replace`` per write that changed an existing document. MongoDB reports no event for a replace by an
identical document, so the stalled run marks its documents (``stalled: true``): the restart must
replace each of them by the generated row (a ``replace`` event per marked ``_id``, no mark left),
which proves the replay happened and was absorbed (one document per ``_id``).
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from arrowflow.connectors.mongodb import MongoSource
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from crash_harness import HERE as CRASH_DIR
from db_crash_pipeline import source as datagen

CRASH = Path(CRASH_DIR)

DB = "arrowflow_it"
END = "end-of-test"


class Writes:
    """Every change event of one collection, collected by a thread from the moment the stream opens
    until the ``_id`` ``END`` is inserted (``finish`` inserts it and waits for it)."""

    def __init__(self, coll: Any) -> None:
        self.coll = coll
        self.events: Counter[tuple[str, Any]] = Counter()
        self.marked: set[Any] = set()  # _ids inserted with the stalled run's mark
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.opened.wait(60), "the change stream did not open"

    def _run(self) -> None:
        try:
            with self.coll.watch(max_await_time_ms=200, full_document="updateLookup") as stream:
                self.opened.set()
                for change in stream:
                    key = change["documentKey"]["_id"]
                    if key == END:
                        return
                    self.events[(change["operationType"], key)] += 1
                    if change["operationType"] == "insert" and change["fullDocument"].get("stalled"):
                        self.marked.add(key)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self.opened.set()

    def finish(self) -> Counter[tuple[str, Any]]:
        self.coll.insert_one({"_id": END})
        self.thread.join(60)
        assert self.error is None, self.error
        assert not self.thread.is_alive(), "the change stream never delivered the end marker"
        self.coll.delete_one({"_id": END})
        return self.events


def test_sigkill_and_resume_loses_nothing_and_duplicates_nothing(mongodb_uri: str, tmp_path: Path) -> None:
    import pymongo

    collection = f"crash_{uuid.uuid4().hex[:10]}"
    rows = 6000
    command = [
        sys.executable, str(CRASH / "db_crash_pipeline.py"), "mongo", "--uri", mongodb_uri,
        "--table", f"{DB}.{collection}", "--rows", str(rows), "--seed", "13",
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--stall-runs", "1",
    ]  # fmt: skip
    expected = datagen(rows, 13, "_id").read_all()
    client: Any = pymongo.MongoClient(mongodb_uri)
    writes = Writes(client[DB][collection])

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        coll = client[DB][collection]
        ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
        assert len(ids) == len(set(ids)), "an _id was written twice"
        assert len(ids) == rows, f"{rows - len(ids)} rows lost"
        got = MongoSource(mongodb_uri, DB, collection, schema=expected.schema).read_all()
        assert_same_rows(got, expected)
        assert coll.count_documents({"stalled": {"$exists": True}}) == 0, "a stalled write was kept"
        events = writes.finish()
        kinds = Counter(kind for kind, _ in events.elements())
        assert {key for _, key in events} == set(range(rows))
        assert kinds["insert"] == rows, kinds
        assert set(kinds) <= {"insert", "replace"}, kinds
        # Run 1 stalled with acknowledged rows no checkpoint covered: its restart replaced them.
        assert writes.marked, "the stalled run wrote nothing"
        replaced = {key for kind, key in events if kind == "replace"}
        assert writes.marked <= replaced, f"{len(writes.marked - replaced)} stalled writes not replayed"

    try:
        crash_mid_stream(command, verify=verify, kills=3, kill_after=(1, 8), seed=4)
    finally:
        client[DB].drop_collection(collection)
        client.close()
