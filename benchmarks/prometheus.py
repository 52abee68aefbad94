"""Workload ``prometheus-encode``: batches of samples -> remote-write 1.0 ``WriteRequest`` bytes.

Samples: 200 series (metric ``http_requests_total``, labels ``host`` x 40 and ``region`` x 5, plus a
constant ``job``), float64 values, millisecond timestamps in time order (as a metrics stream
arrives), in batches of 10,000 rows; one extra method shuffles the timestamps so the sink must sort.

Methods (each produces the uncompressed protobuf bytes of one WriteRequest per batch, samples
grouped per series and ordered by timestamp within it):

* ``arrowflow kernel, per 10k batch``: :class:`PrometheusSink`'s own path: ``sort_batch`` (a
  monotonic check), ``encode`` (series found by dictionary-encoding the label columns, label kernel
  once per series) and ``encode_request`` (stable radix sort by series + WriteRequest kernel).
* ``... shuffled timestamps``: the same on batches whose timestamps are shuffled (``sort_batch``
  really sorts).
* ``arrowflow kernel, per 500-sample request``: the same cut into the sink's default request size.
* ``+ snappy``: the per-batch path plus ``cramjam.snappy.compress_raw`` (what is POSTed).
* ``protobuf package``: ``to_pylist`` + a dict of series + ``WriteRequest`` messages built with
  the protobuf runtime (messages defined at run time with ``descriptor_pb2``), ``SerializeToString``;
  on a subset of batches. Its bytes are checked equal to the kernel's during setup.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register

BATCH = 10_000


def make_batches(rows: int, seed: int, *, shuffled: bool = False) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    hosts = np.array([f"host-{i:03d}.example.net" for i in range(40)])
    regions = np.array(["eu-west-1", "us-east-1", "us-west-2", "ap-south-1", "sa-east-1"])
    out = []
    base = 1_700_000_000_000
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        out.append(
            pa.record_batch(
                {
                    "host": pa.array(hosts[rng.integers(0, 40, n)]),
                    "region": pa.array(regions[rng.integers(0, 5, n)]),
                    "value": rng.normal(100, 20, n),
                    "timestamp": pa.array(
                        base + start + (rng.permutation(n) if shuffled else np.arange(n)), pa.int64()
                    ),
                }
            )
        )
    return out


def protobuf_encode(write_request: type, batch: pa.RecordBatch) -> bytes:
    """The baseline: per-sample Python objects, series grouped in a dict, protobuf messages."""
    cols = batch.to_pydict()
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for host, region, value, ts in zip(
        cols["host"], cols["region"], cols["value"], cols["timestamp"], strict=True
    ):
        series.setdefault((host, region), []).append((ts, value))
    msg = write_request()
    for (host, region), points in series.items():
        t = msg.timeseries.add()
        t.labels.add(name="__name__", value="http_requests_total")
        t.labels.add(name="host", value=host)
        t.labels.add(name="job", value="bench")
        t.labels.add(name="region", value=region)
        points.sort(key=lambda p: p[0])
        for ts, value in points:
            t.samples.add(value=value, timestamp=ts)
    return msg.SerializeToString()


def setup(config: RunConfig) -> Prepared:
    from arrowflow.connectors.prometheus import PrometheusSink

    batches = make_batches(config.rows, config.seed)
    shuffled = make_batches(config.rows, config.seed, shuffled=True)
    n = sum(b.num_rows for b in batches)
    sink = PrometheusSink(
        url="http://127.0.0.1:9/api/v1/write",  # never contacted: only the encoding runs
        metric_name="http_requests_total",
        label_columns=["host", "region"],
        static_labels={"job": "bench"},
    )

    def encode_batch(batch: pa.RecordBatch) -> bytes:
        return sink.encode_request(sink.encode(sink.sort_batch(batch)))

    def run_kernel() -> int:
        for b in batches:
            encode_batch(b)
        return n

    def run_shuffled() -> int:
        for b in shuffled:
            encode_batch(b)
        return n

    def run_requests() -> int:
        for b in batches:
            entries = sink.encode(sink.sort_batch(b))
            for start in range(0, len(entries), 500):
                sink.encode_request(entries.slice(start, 500))
        return n

    import cramjam

    def run_snappy() -> int:
        for b in batches:
            cramjam.snappy.compress_raw(encode_batch(b))
        return n

    methods = {
        "arrowflow kernel, per 10k batch": Method(run=run_kernel, target=Target(min_rate=5e6)),
        "arrowflow kernel, shuffled timestamps": Method(run=run_shuffled),
        "arrowflow kernel, per 500-sample request": Method(run=run_requests),
        "arrowflow kernel + snappy": Method(run=run_snappy),
    }
    try:
        from arrowflow._reference.remote_write import write_request_class

        write_request = write_request_class()
    except ImportError:
        methods["protobuf package"] = Method(skip="skipped: protobuf not installed")
    else:
        pb_batches = batches[: max(1, config.subset(20_000 if config.quick else 100_000) // BATCH)]
        pb_n = sum(b.num_rows for b in pb_batches)
        # A wrong baseline cannot flatter: both must produce the very same bytes.
        assert protobuf_encode(write_request, batches[0]) == encode_batch(batches[0])
        # Series order follows first appearance in time order: give the baseline that order too.
        assert protobuf_encode(write_request, sink.sort_batch(shuffled[0])) == encode_batch(shuffled[0])

        def run_protobuf() -> int:
            for b in pb_batches:
                protobuf_encode(write_request, b)
            return pb_n

        methods["protobuf package"] = Method(
            run=run_protobuf, note=f"on {pb_n:,} samples, scaled", target=Target(min_speedup=10)
        )
    return Prepared(methods=methods, bytes_per_row=float(batches[0].nbytes) / batches[0].num_rows)


WORKLOAD = register(
    Workload(
        name="prometheus-encode",
        description="samples (200 series) -> remote-write WriteRequest protobuf, per 10k-sample batch",
        setup=setup,
        reference="arrowflow kernel, per 10k batch",
        idiomatic=("protobuf package",),
    )
)
