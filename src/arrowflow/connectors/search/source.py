"""Bounded read of an Elasticsearch/OpenSearch index: ``search_after`` pages, one split per slice.

* ``plan()`` returns ``slices`` splits (no request is made). With ``slices == 1`` the split pages
  through the index with ``search_after`` over ``sort``; with ``slices > 1`` each split reads one
  ``slice`` of a point in time (PIT) opened by its reader (servers that have PIT: Elasticsearch
  ``/_pit``, OpenSearch ``/_search/point_in_time``).
* ``sort`` must be a total order (a unique field last). The default ``[{"_id": "asc"}]`` works on
  OpenSearch (which logs a deprecation: it loads ``_id`` field data into the heap), but
  Elasticsearch 8+ refuses to sort on ``_id`` unless the cluster setting
  ``indices.id_field_data.enabled`` is on (off by default): the first read then fails with a
  :class:`~arrowflow.errors.ConnectorError` naming ``sort``. Pass a unique keyword or numeric field
  of the documents there.
* A position is ``{"search_after": [sort values of the last row returned]}`` (JSON), ``None`` at
  the start; reopening a split from it re-reads nothing and skips nothing, as long as the index does
  not change between runs (the PIT is not kept across a restart).
* Hits become Arrow columns with ``schema`` (explicit: values are converted, ISO-8601 text to
  timestamps, numeric text to numbers, base64 text to binary; missing fields become nulls) or
  inferred from the first page
  (later pages are cast to it). ``columns`` projects ``_source``; ``id_column`` adds the hit's
  ``_id`` as a column. The client parses the answer into Python objects, so this read path is
  bounded by the client's JSON parsing (no kernel here).
* ``read_batch`` blocks for one HTTP request (``request_timeout`` bounds it, not ``timeout``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, ConfigAttributes, hide_secrets, resolve_config, reveal_secrets
from ...errors import ConfigurationError, ConnectorError
from ...formats.json import _convert as json_convert
from ...formats.json import _read_type as json_read_type
from ...source import Position, Source, Split, SplitReader
from ._client import Flavor
from .config import SearchSourceConfig

__all__ = ["SearchSource", "SearchSourceConfig", "hits_to_batch"]


def _has_binary(t: pa.DataType) -> bool:
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_binary(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_binary(t.value_type)
    return False


def _array(values: list[Any], target: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # JSON gives timestamps as ISO-8601 text and ids as strings: let Arrow's cast parse them.
        return pa.array(values).cast(target)


def _column(values: list[Any], target: pa.DataType | None) -> pa.Array:
    if target is None:
        return pa.array(values)
    if _has_binary(target):
        # Bytes travel as base64 text (what the sink writes and the servers' `binary` type holds).
        # pa.array would take that text as the bytes themselves: read it as text, then decode it
        # (vectorized, also inside structs and lists) as the JSON format does.
        return json_convert(_array(values, json_read_type(target, "search source schema")), target)
    return _array(values, target)


def hits_to_batch(
    hits: Sequence[Mapping[str, Any]], schema: pa.Schema | None, id_column: str | None
) -> pa.RecordBatch:
    """A batch of ``hits`` (``_source`` fields, plus ``_id`` as ``id_column``) with ``schema``."""
    sources = [h.get("_source") or {} for h in hits]
    if schema is None:
        table = pa.Table.from_pylist(sources) if sources else pa.table({})
        if id_column is not None:
            ids = pa.array([h.get("_id") for h in hits], pa.string())
            if id_column in table.schema.names:
                table = table.set_column(table.schema.get_field_index(id_column), id_column, ids)
            else:
                table = table.append_column(id_column, ids)
        return table.combine_chunks().to_batches()[0] if table.num_rows else pa.record_batch({})
    arrays = []
    for f in schema:
        key = "_id" if f.name == id_column else None
        values = [h.get("_id") for h in hits] if key else [s.get(f.name) for s in sources]
        arrays.append(_column(values, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class SearchSource(ConfigAttributes, Source):
    """Reads an index once (bounded). See the module docstring for splits, positions and types.

    ``hosts`` (or ``client``, not closed by the source) and ``client_options`` say where to read,
    as for the sink; the other options are :class:`SearchSourceConfig`'s.
    """

    name = "search"
    replayable = True
    #: The client library (set by the Elasticsearch and OpenSearch classes).
    flavor: Flavor

    def __init__(
        self,
        hosts: Any = None,
        index: str = REQUIRED,
        *,
        query: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
        columns: Sequence[str] | None = None,
        id_column: str | None = None,
        sort: Sequence[Any] = ({"_id": "asc"},),
        page_size: int = 1000,
        slices: int = 1,
        keep_alive: str = "5m",
        client: Any = None,
        client_options: Mapping[str, Any] | None = None,
        flavor: Flavor | None = None,
        config: SearchSourceConfig | None = None,
    ) -> None:
        if isinstance(hosts, Flavor):  # 0.1.0: SearchSource(flavor, config, hosts=..., ...)
            flavor, config, hosts, index = hosts, index, None, REQUIRED  # type: ignore[assignment]
        config = resolve_config(SearchSourceConfig, config, locals())
        flavor = flavor or getattr(type(self), "flavor", None)
        if not isinstance(flavor, Flavor):
            raise ConfigurationError("give flavor= (ELASTICSEARCH or OPENSEARCH)", option="flavor")
        if (hosts is None) == (client is None):
            raise ConfigurationError("give either hosts or client", option="hosts")
        self.flavor = flavor
        self.config = config
        self.name = flavor.name
        self.client_options = hide_secrets(dict(client_options or {}))
        self._hosts = hosts
        self._client = client

    #: Every split ends (a class constant, not a property).
    bounded = True

    @property
    def schema(self) -> pa.Schema | None:
        return self.config.schema

    def plan(self) -> list[Split]:
        n = self.config.slices
        return [
            Split(
                split_id=f"{self.config.index}/slice-{i}" if n > 1 else self.config.index,
                params={"slice": i, "slices": n},
            )
            for i in range(n)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if self._client is not None:
            client, owned = self._client, False
        else:
            client, owned = self.flavor.make_client(self._hosts, reveal_secrets(self.client_options)), True
        return _SearchReader(self, split, position, client, owned)


class _SearchReader(SplitReader):
    def __init__(
        self, source: SearchSource, split: Split, position: Position, client: Any, owned: bool
    ) -> None:
        super().__init__(split, position)
        if position is not None and not (isinstance(position, Mapping) and "search_after" in position):
            raise ConfigurationError(f"not a search position: {position!r}", option="position")
        self._source = source
        self._client = client
        self._owned = owned
        self._after: list[Any] | None = list(position["search_after"]) if position else None
        self._finished = False
        self._closed = False
        self._pit: str | None = None
        self._schema = source.config.schema

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return None if self._after is None else {"search_after": list(self._after)}

    def _body(self, size: int) -> dict[str, Any]:
        cfg = self._source.config
        body: dict[str, Any] = {"size": size, "sort": list(cfg.sort)}
        if cfg.query is not None:
            body["query"] = dict(cfg.query)
        if cfg.columns is not None:
            body["_source"] = [c for c in cfg.columns if c != cfg.id_column]
        if self._after is not None:
            body["search_after"] = self._after
        slices = int(self.split.params.get("slices", 1))
        if slices > 1:
            if self._pit is None:
                self._pit = self._source.flavor.open_pit(self._client, cfg.index, cfg.keep_alive)
            body["pit"] = {"id": self._pit, "keep_alive": cfg.keep_alive}
            body["slice"] = {"id": int(self.split.params["slice"]), "max": slices}
        return body

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._finished or self._closed:
            return None
        cfg = self._source.config
        size = min(cfg.page_size, max_rows)
        body = self._body(size)
        path = "/_search" if "pit" in body else f"/{cfg.index}/_search"
        try:
            answer = self._source.flavor.request(self._client, "POST", path, body=body)
        except Exception as exc:
            if "id_field_data" in str(exc):
                # Elasticsearch 8+ refuses to sort on _id by default; say which option fixes it.
                raise ConnectorError(
                    f"{self._source.name}: the server refuses to sort on _id (sort={list(cfg.sort)}): "
                    "Elasticsearch 8+ turns indices.id_field_data.enabled off. Pass sort= with a "
                    "unique keyword or numeric field of the documents, e.g. sort=[{'id': 'asc'}], "
                    f"or enable that cluster setting. Server said: {exc}"
                ) from exc
            raise
        hits = answer.get("hits", {}).get("hits", [])
        if len(hits) < size:
            self._finished = True
            self._release_pit()
        if not hits:
            return None
        last = hits[-1].get("sort")
        if last is None:
            raise ConnectorError(f"{self._source.name}: hits carry no sort values; cannot page")
        batch = hits_to_batch(hits, self._schema, cfg.id_column)
        if self._schema is None:
            self._schema = batch.schema
        self._after = list(last)
        return batch

    def _release_pit(self) -> None:
        if self._pit is not None:
            pit, self._pit = self._pit, None
            try:
                self._source.flavor.close_pit(self._client, pit)
            except Exception:  # an expired PIT is gone anyway
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_pit()
        if self._owned:
            self._client.close()
