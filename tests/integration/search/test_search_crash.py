"""SIGKILL crash/restart of a checkpointed DataGen -> search sink pipeline with ``_id`` from the data.

The pipeline (``search_crash_pipeline.py``) runs as its own process; the crash harness kills it with
SIGKILL from this process, restarts it from its checkpoint directory, and finally lets it run to the
end. Runs 0 and 2 are killed while a checkpoint is stalled after its flush (so acknowledged rows that
no checkpoint covers are certainly written again on restart), runs 1 and 3 after a seeded random
number of batches: exactly four kills land while data is in flight.
Replayed rows overwrite their own documents: the index must end up holding every row exactly once,
with the values the deterministic source generates, after more writes than rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from search_helpers import admin, check_server, client_options, count, new_index, server_url

from arrowflow.connectors.search import ELASTICSEARCH, OPENSEARCH, Flavor
from arrowflow.connectors.search.elasticsearch import ElasticsearchSource
from arrowflow.connectors.search.opensearch import OpenSearchSource
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from search_crash_pipeline import make_source

HERE = Path(__file__).resolve().parent
FLAVORS = {
    "opensearch": (OPENSEARCH, OpenSearchSource),
    "elasticsearch": (ELASTICSEARCH, ElasticsearchSource),
}
MAPPINGS = {
    "properties": {"text": {"type": "keyword"}, "value": {"type": "double"}, "flag": {"type": "boolean"}}
}
ROWS = 4000


@pytest.fixture(params=sorted(FLAVORS))
def kind(request: pytest.FixtureRequest) -> str:
    check_server(FLAVORS[request.param][0])
    return str(request.param)


@pytest.fixture
def index(kind: str) -> Iterator[str]:
    yield from new_index(FLAVORS[kind][0], MAPPINGS)


def _writes(flavor: Flavor, index: str) -> int:
    """Writes the index has seen: the sum of the documents' ``_version`` (1 per write of an id)."""
    answer: Any = admin(
        flavor,
        "POST",
        f"/{index}/_search",
        body={"query": {"match_all": {}}, "size": ROWS + 10, "version": True, "_source": False},
    )
    return sum(int(hit["_version"]) for hit in answer["hits"]["hits"])


def test_sigkill_restart_with_ids_loses_nothing_and_duplicates_nothing(
    kind: str, index: str, tmp_path: Path
) -> None:
    flavor, source_cls = FLAVORS[kind]
    url = server_url(flavor)
    command = [
        sys.executable,
        str(HERE / "search_crash_pipeline.py"),
        kind,
        "--url",
        url,
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
        assert count(flavor, index) == ROWS, "lost or duplicated documents"
        expected = make_source(ROWS).read_all()
        got = source_cls(
            url,
            index,
            client_options=client_options(flavor, url),
            schema=expected.schema,
            id_column="id",
            page_size=1000,
        ).read_all()
        assert got.num_rows == ROWS
        assert sorted(got.column("id").to_pylist()) == list(range(ROWS))
        assert_same_rows(got, expected)

    report = crash_mid_stream(command, verify=verify, kills=4, kill_after=(1, 10), seed=11)
    # The kills made the pipeline write rows again (else "no duplicates" would prove nothing):
    # more writes than documents, every extra write an overwrite of an existing id.
    writes = _writes(flavor, index)
    assert writes > ROWS, f"no row was replayed after {report.kills} kill(s) ({writes} writes)"
