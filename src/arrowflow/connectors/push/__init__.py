"""Netty-style push sources (Bahir's Netty connector): clients connect to arrowflow and push data.

* :class:`TcpPushSource`: a listening TCP socket; each client sends newline-delimited frames or
  frames with a 4-byte big-endian length prefix. Frames are decoded with a format (``Raw`` by
  default: one ``value`` column; ``Json``, ``Csv``, ...) per received chunk, in the connection's
  thread. When the buffer is full the connection thread stops reading, so TCP flow control pushes
  back on the client. A frame longer than ``max_frame_bytes`` closes that connection (counted in
  ``connections_dropped``; frames already complete are kept).
* :class:`HttpPushSource`: an HTTP endpoint (stdlib ``ThreadingHTTPServer``) that accepts POSTed
  bodies: ``application/json`` (an array of objects, or one object), ``application/x-ndjson``
  (also ``application/jsonl``), ``text/csv`` (with a header row), ``application/vnd.apache.arrow.stream``.
  Answers: ``200 {"accepted": n}`` only after the rows are in the buffer; ``429`` (with
  ``Retry-After``) when the buffer stays full for ``accept_timeout`` seconds (backpressure: retry
  later); ``503`` once the source is closed; ``400`` for a body that does not parse or does not fit
  ``schema``; ``401`` for a missing or wrong bearer token (when ``token`` is set); ``404`` for another
  path; ``405`` for other methods; ``411`` without ``Content-Length`` (chunked bodies are refused);
  ``413`` for a body over ``max_body_bytes`` (not read); ``415`` for another content type.

Both listen on ``host:port`` (``port=0`` picks a free port; :attr:`address` tells which) from the
first :meth:`start` / ``open()`` until :meth:`close`; one split, ``"push"``.

Hostile clients (both sources; every option is checked at construction, naming the option):

* ``header_timeout`` / ``body_timeout`` (seconds, ``None`` = no limit) bound the time a client may
  take, as a deadline for the whole part, not per read, so a client sending a byte now and then
  (slowloris) cannot hold a connection. HTTP: the request line and headers must arrive within
  ``header_timeout`` of the connection being ready for a request (the TLS handshake included, and
  an idle keep-alive connection is closed after it), the body within ``body_timeout`` of the
  headers (else ``408`` and the connection is closed); a response the client does not read within
  ``body_timeout`` closes it. TCP: ``header_timeout`` is how long a connection may stay idle between
  frames (and the TLS handshake's limit), ``body_timeout`` how long a frame may take from its first
  byte to its last; time the source itself spends blocked on a full buffer does not count. Expired
  connections are closed and counted (``connections_timed_out``).
* ``max_connections`` bounds the connections served at once (each holds a thread). HTTP answers an
  excess connection ``503`` with ``Retry-After`` and closes it (without TLS; with TLS it is closed,
  since a 503 would cost the handshake the limit saves); TCP closes it at once. Counted in
  ``connections_refused``.
* ``tls_cert`` / ``tls_key`` (PEM file paths, both or neither) serve TLS 1.2+ (HTTPS; TLS on the TCP
  socket). The handshake runs on the connection's thread under ``header_timeout``; a client that
  does not trust the certificate fails it (counted in ``tls_handshake_failures``).

Guarantee: at-most-once, by nature. A client's data is acknowledged (HTTP 200, or TCP ACK) when it is
in arrowflow's memory, not when a checkpoint holds it: rows buffered when the process dies are lost,
and nothing is replayed after a restart. Rows that were answered 200 are never dropped while the
process lives (tests check that no accepted row is lost).

The sources are in :mod:`.tcp` and :mod:`.http`, their options in :mod:`.config`
(:class:`TcpPushSourceConfig` and :class:`HttpPushSourceConfig`, on the listener options they share,
:class:`PushListenerConfig`), their common base in :mod:`._server`.
"""

from __future__ import annotations

from .config import HttpPushSourceConfig, PushListenerConfig, TcpPushSourceConfig, server_tls_context
from .http import HttpPushSource, parse_body
from .tcp import TcpPushSource

__all__ = [
    "HttpPushSource",
    "HttpPushSourceConfig",
    "PushListenerConfig",
    "TcpPushSource",
    "TcpPushSourceConfig",
    "parse_body",
    "server_tls_context",
]
