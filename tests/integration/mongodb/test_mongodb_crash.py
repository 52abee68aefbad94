"""MongoSink (``mode="replace"`` keyed on ``_id``) through SIGKILL crashes, against SecantusDB.

A DataGen -> MongoSink pipeline process (tests/integration/crash/db_crash_pipeline.py) is killed from
this process at random moments and resumed from its checkpoint; the collection must hold exactly the
generated rows: nothing lost, no ``_id`` twice, every field as generated.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from arrowflow.connectors.mongodb import MongoSource
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import HERE as CRASH_DIR
from crash_harness import CrashReport, run_with_crashes
from db_crash_pipeline import source as datagen

CRASH = Path(CRASH_DIR)

DB = "arrowflow_it"


def test_sigkill_and_resume_loses_nothing_and_duplicates_nothing(mongodb_uri: str, tmp_path: Path) -> None:
    import pymongo

    collection = f"crash_{uuid.uuid4().hex[:10]}"
    rows = 3000
    command = [
        sys.executable, str(CRASH / "db_crash_pipeline.py"), "mongo", "--uri", mongodb_uri,
        "--table", f"{DB}.{collection}", "--rows", str(rows), "--seed", "13",
        "--checkpoint-dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    expected = datagen(rows, 13, "_id").read_all()

    def verify(report: CrashReport) -> None:
        assert "done rows=" in report.final_stdout
        with pymongo.MongoClient(mongodb_uri) as client:
            coll = client[DB][collection]
            ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
        assert len(ids) == len(set(ids)), "an _id was written twice"
        assert len(ids) == rows, f"{rows - len(ids)} rows lost"
        got = MongoSource(mongodb_uri, DB, collection, schema=expected.schema).read_all()
        assert_same_rows(got, expected)

    try:
        report = run_with_crashes(
            command,
            verify=verify,
            kills=3,
            min_delay=0.2,
            max_delay=1.0,
            ready_line="started",
            seed=4,
            timeout=120,
        )
        assert report.kills >= 1
    finally:
        with pymongo.MongoClient(mongodb_uri) as client:
            client[DB].drop_collection(collection)
