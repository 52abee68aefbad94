"""SIGKILL crash/restart of a checkpointed DataGen -> search sink pipeline with ``_id`` from the data.

The pipeline (``search_crash_pipeline.py``) runs as its own process; the crash harness kills it with
SIGKILL from this process, restarts it from its checkpoint directory, and finally lets it run to the
end. Runs 0 and 2 are killed while a checkpoint is stalled after its flush (so acknowledged rows that
no checkpoint covers are certainly written again on restart), runs 1 and 3 after a seeded random
number of batches: exactly four kills land while data is in flight.
Replayed rows overwrite their own documents: the index must end up holding every row exactly once,
with the values the deterministic source generates, after at least as many extra writes (``_version``
sums) as the stalled runs had acknowledged without a checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from search_helpers import NATIVE, TARGETS, Target, admin, check_server, count, new_index

from arrowflow.connectors.search import ELASTICSEARCH
from arrowflow.connectors.search.elasticsearch import ElasticsearchSource
from arrowflow.connectors.search.opensearch import OpenSearchSource
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from search_crash_pipeline import make_source

HERE = Path(__file__).resolve().parent
MAPPINGS = {
    "properties": {"text": {"type": "keyword"}, "value": {"type": "double"}, "flag": {"type": "boolean"}}
}
ROWS = 4000


@pytest.fixture(params=NATIVE)
def target(request: pytest.FixtureRequest) -> Target:
    t = TARGETS[request.param]
    check_server(t)
    return t


@pytest.fixture
def index(target: Target) -> Iterator[str]:
    yield from new_index(target, MAPPINGS)


def _writes(target: Target, index: str) -> int:
    """Writes the index has seen: the sum of the documents' ``_version`` (1 per write of an id)."""
    answer: Any = admin(
        target,
        "POST",
        f"/{index}/_search",
        body={"query": {"match_all": {}}, "size": ROWS + 10, "version": True, "_source": False},
    )
    return sum(int(hit["_version"]) for hit in answer["hits"]["hits"])


def test_sigkill_restart_with_ids_loses_nothing_and_duplicates_nothing(
    target: Target, index: str, tmp_path: Path
) -> None:
    source_cls = ElasticsearchSource if target.flavor is ELASTICSEARCH else OpenSearchSource
    command = [
        sys.executable,
        str(HERE / "search_crash_pipeline.py"),
        target.name,
        "--url",
        target.url,
        "--index",
        index,
        "--rows",
        str(ROWS),
        "--checkpoint-dir",
        str(tmp_path / "cp"),
        "--stall-runs",
        "0,2",
    ]

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        assert count(target, index) == ROWS, "lost or duplicated documents"
        expected = make_source(ROWS).read_all()
        got = source_cls(
            target.url,
            index,
            client_options=target.client_options(),
            schema=expected.schema,
            id_column="id",
            page_size=1000,
        ).read_all()
        assert got.num_rows == ROWS
        assert sorted(got.column("id").to_pylist()) == list(range(ROWS))
        assert_same_rows(got, expected)

    report = crash_mid_stream(command, verify=verify, kills=4, kill_after=(1, 10), seed=11)
    stalled = [int(n) for n in (tmp_path / "cp.stalls").read_text().split()]
    assert len(stalled) == 2 and min(stalled) > 0, f"stalled runs recorded {stalled}"
    # The kills made the pipeline write rows again (else "no duplicates" would prove nothing): every
    # row a stalled run had acknowledged without a checkpoint was written again after its kill, each
    # extra write an overwrite of an existing id (one more ``_version``).
    writes = _writes(target, index)
    assert writes >= ROWS + sum(stalled), (
        f"{writes} writes after {report.kills} kills, stalls of {stalled} rows: no replay"
    )
