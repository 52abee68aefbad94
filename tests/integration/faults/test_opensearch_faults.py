"""OpenSearchSink against the real OpenSearch node (tests/services/opensearch.sh) through the fault
proxy (issue 19): each fault of ``tests/faults/scenario.py`` while ``_bulk`` requests flow; every row
ends up in the index once (``_id`` from the data: a resent request overwrites its own documents, and a
``_version`` above 1 shows where a replay landed), a silent node is noticed by the client's
``timeout`` instead of hanging the flush, and the metrics count the retries, reconnects and timeouts.

The sink is built with its default client options but ``timeout``: the client's own retries are off
by default (the writer retries, with backoff and in its metrics), which these tests rely on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, write_through
from search_helpers import TARGETS, admin, check_server, new_index

from arrowflow.connectors.search.config import SEARCH_BATCHING
from arrowflow.connectors.search.opensearch import OpenSearchSink
from arrowflow.testing import make_table

SERVICE = "opensearch"  # the proxy fixture (conftest.py) fronts this server
TARGET = TARGETS["opensearch"]
TIMEOUT = 3.0  # the client's request timeout
STALL = 12.0  # longer than TIMEOUT, with room for a slow first request on a loaded machine
ROWS = 3000


@pytest.fixture
def index() -> Iterator[str]:
    check_server(TARGET)
    yield from new_index(TARGET, {"properties": {"name": {"type": "keyword"}}})


def _sink(proxy: FaultProxy, index: str) -> OpenSearchSink:
    return OpenSearchSink(
        f"http://127.0.0.1:{proxy.port}",
        index,
        id_column="id",
        client_options={"timeout": TIMEOUT},
        # Retries for as long as a test may take: the faults end, the rows must get through.
        batching=dataclasses.replace(
            SEARCH_BATCHING, max_request_rows=250, max_attempts=None, max_retry_time=CAP, max_backoff=0.5
        ),
    )


def _documents(index: str) -> dict[int, tuple[str, int]]:
    """``_id -> (name, _version)`` of every document of ``index``, read from the node directly."""
    admin(TARGET, "POST", f"/{index}/_refresh")
    answer: Any = admin(
        TARGET,
        "POST",
        f"/{index}/_search",
        body={"query": {"match_all": {}}, "size": ROWS + 100, "version": True},
    )
    hits = answer["hits"]["hits"]
    assert answer["hits"]["total"]["value"] == len(hits)
    return {int(h["_id"]): (h["_source"]["name"], int(h["_version"])) for h in hits}


def _write_through(fault: str, proxy: FaultProxy, index: str, **faults: Any) -> dict[str, int]:
    rows = make_table(ROWS).select(["id", "name"])
    sink = _sink(proxy, index)
    m = write_through(fault, proxy, sink, rows, stall=STALL, **faults)
    docs = _documents(index)
    want = dict(zip(rows.column("id").to_pylist(), rows.column("name").to_pylist(), strict=True))
    assert {i: name for i, (name, _) in docs.items()} == want  # every row, once (``_id`` upserts)
    assert m["rows_written"] >= ROWS and m["rows_failed"] == 0, m
    check_recovered(fault, m, proxy)
    m["replayed_documents"] = sum(1 for _, version in docs.values() if version > 1)
    return m


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_loses_nothing_through(fault: str, proxy: FaultProxy, index: str) -> None:
    # reset: the request is cut after 2000 bytes, before the node has all of it (nothing indexed).
    m = _write_through(fault, proxy, index)
    if fault in ("latency", "bandwidth"):
        assert m["replayed_documents"] == 0 and m["reconnects"] == 0, m


def test_sink_replays_a_bulk_whose_answer_was_cut_without_duplicates(proxy: FaultProxy, index: str) -> None:
    """The node indexed the request, its answer is reset on the way back: the sink cannot know what
    landed and sends it again. The documents are written twice (``_version`` 2: the replay really
    happened) and are still there once each."""
    m = _write_through("reset", proxy, index, reset_direction="down", reset_bytes=2000)
    assert m["replayed_documents"] >= 1, m
