"""Head to head: arrowflow against Apache Flink, Quix Streams, Bytewax and a plain client loop
(``python -m benchmarks.peers``; see benchmarks/peers/README.md).

Every system runs the same jobs against the same real Apache Kafka broker and PostgreSQL server
(tests/services), on the same data (the 8-column table of :mod:`benchmarks.data` as JSON messages),
each in its own runtime (the project's interpreter for arrowflow, ``.peers/venvs/<peer>`` for the
Python peers, a JVM for Flink), in interleaved rounds; a run counts only after its output was read
back and compared row by row with the expected rows.
"""
