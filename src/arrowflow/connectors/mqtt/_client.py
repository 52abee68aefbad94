"""The publishing connection of :class:`~arrowflow.connectors.mqtt.MqttSink`: its own MQTT
socket on which a request's PUBLISH packets, built by the compiled kernel
:mod:`arrowflow._ext.mqtt_frames`, are written in windows and the broker's acknowledgements read in
bulk.

paho's ``publish`` builds and queues each message in Python, wakes its network thread per message
and, with a large in-flight window, rescans every pending message on each PUBACK: 60-110 us of CPU
per QoS 1 message, ~8k messages/s against a local Mosquitto. Here the packets of a whole request are
one buffer; at most a window of unacknowledged QoS 1/2 messages is on the wire (MQTT 5: the broker's
``Receive Maximum`` from CONNACK; MQTT 3.1.1: 1000 at QoS 1, 20 at QoS 2, see ``WINDOW_311``) and
each received chunk of acknowledgements is read by one kernel call.

Protocol: ``CONNECT`` (MQTT 5 or 3.1.1, the sink's client id, clean start / session expiry,
keep-alive, user name and password), then per request the PUBLISH packets (packet ids continue from
request to request, 1..65535). QoS 1 ends at ``PUBACK``, QoS 2 at ``PUBCOMP`` (``PUBREC`` is
answered with ``PUBREL``), QoS 0 once written. An MQTT 5 reason code >= 0x80 fails that message
(0x91 packet id in use and 0x97 quota exceeded retryably, the others for the error policy). A
connection idle for half the keep-alive is checked with ``PINGREQ`` before it is used. Any socket
error, timeout or unexpected packet fails the request's unacknowledged messages retryably and drops
the connection (the next request reconnects): at-least-once, as with paho.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..._ext import load
from ...config import reveal
from .._messaging.sockets import open_socket

if TYPE_CHECKING:
    from .config import MqttConnection

__all__ = ["MqttPublisher", "PublishError"]

#: In-flight windows for MQTT 3.1.1, which has no Receive Maximum: QoS 1 keeps no state on the broker
#: (Mosquitto acknowledges any number); QoS 2 does until PUBREL, and brokers cap it (Mosquitto at its
#: max_inflight_messages, 20, dropping the excess silently; EMQX at max_awaiting_rel): paho's default.
WINDOW_311 = {1: 1000, 2: 20}
_CONNACK, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _PINGRESP, _DISCONNECT = 2, 4, 5, 6, 7, 13, 14
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
#: MQTT 5 PUBACK/PUBREC reason codes worth retrying (packet id in use, quota exceeded).
_RETRYABLE_REASONS = frozenset({0x91, 0x97})
_CONNACK_REFUSED = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class PublishError(Exception):
    """The connection failed (socket, timeout, refused, protocol): the caller drops it. ``acked``:
    per message of the request, whether the broker acknowledged it before the failure."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.acked: np.ndarray | None = None


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class MqttPublisher:
    """One MQTT connection that publishes requests (see the module docstring)."""

    def __init__(self, connection: MqttConnection, *, client_id: str, timeout: float) -> None:
        """Connect as ``client_id`` with ``connection``'s broker, protocol, clean start, session
        expiry, keep-alive and credentials; ``timeout`` bounds the connect and every socket wait."""
        c = connection
        self._kernel = load("mqtt_frames")
        self.v5 = c.protocol == "5"
        self.keepalive = c.keepalive
        #: The broker's Receive Maximum (MQTT 5); None: not announced (3.1.1: see WINDOW_311).
        self.receive_maximum: int | None = None
        #: MQTT 5 CONNACK limits (None: not announced).
        self.max_packet: int | None = None
        self.max_qos = 2
        self._next_id = 1
        self._buf = bytearray()
        self._last_io = time.monotonic()
        self._sock = open_socket(c.host, c.port, timeout, PublishError)
        try:
            self._connect(c, client_id, timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, connection: MqttConnection, client_id: str, timeout: float) -> None:
        clean_start = connection.clean_session
        username = connection.username
        password = reveal(connection.password)
        flags = 0x02 if clean_start else 0
        payload = _utf8(client_id)
        if username is not None:
            flags |= 0x80
        if password is not None:
            flags |= 0x40
        props = b""
        if self.v5:
            # Session Expiry Interval (0x11): 0 = the session ends with the connection.
            props = b"\x11" + struct.pack(">I", 0 if clean_start else connection.session_expiry)
            props = _varint(len(props)) + props
        head = _utf8("MQTT") + bytes([5 if self.v5 else 4, flags]) + struct.pack(">H", self.keepalive)
        if username is not None:
            payload += _utf8(username)
        if password is not None:
            raw = password.encode()
            payload += struct.pack(">H", len(raw)) + raw
        body = head + props + payload
        self._send(b"\x10" + _varint(len(body)) + body)
        deadline = time.monotonic() + timeout
        packet = self._packet(deadline)
        if packet[0] >> 4 != _CONNACK:
            raise PublishError(f"expected CONNACK, got packet type {packet[0] >> 4}")
        body = packet[1]
        code = body[1] if len(body) > 1 else 255
        if code:
            why = _CONNACK_REFUSED.get(code, f"reason code 0x{code:02x}") if not self.v5 else f"0x{code:02x}"
            # Bad credentials or a rejected client id do not heal by retrying.
            raise PublishError(f"the broker refused the connection: {why}", retryable=code in (3, 0x88, 0x89))
        if self.v5:
            self._connack_properties(body[2:])

    def _connack_properties(self, raw: bytes) -> None:
        """Read the CONNACK properties this publisher obeys (the others are skipped by their size)."""
        length, i = 0, 0
        mult = 1
        while True:
            byte = raw[i]
            i += 1
            length += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        end = i + length
        sizes = {0x11: 4, 0x21: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x22: 2, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2}
        while i < end:
            prop = raw[i]
            i += 1
            if prop == 0x21:  # Receive Maximum
                self.receive_maximum = struct.unpack(">H", raw[i : i + 2])[0]
            elif prop == 0x27:  # Maximum Packet Size
                self.max_packet = struct.unpack(">I", raw[i : i + 4])[0]
            elif prop == 0x24:  # Maximum QoS
                self.max_qos = raw[i]
            if prop in sizes:
                i += sizes[prop]
            elif prop == 0x26:  # User Property: two strings
                for _ in range(2):
                    i += 2 + struct.unpack(">H", raw[i : i + 2])[0]
            else:  # strings and binary data: assigned client id, reason string, auth ...
                i += 2 + struct.unpack(">H", raw[i : i + 2])[0]

    # -- I/O -----------------------------------------------------------------------------------------

    def _send(self, data: bytes | memoryview) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise PublishError(f"send failed: {exc}") from exc
        self._last_io = time.monotonic()

    def _recv(self, timeout: float) -> bool:
        try:
            ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
            if not ready:
                return False
            data = self._sock.recv(1 << 16)
        except OSError as exc:
            raise PublishError(f"receive failed: {exc}") from exc
        if not data:
            raise PublishError("the broker closed the connection")
        if _QUICKACK is not None:
            # Acknowledge at once (Linux turns delayed ACKs back on after a while): a broker sending
            # with Nagle (Mosquitto's default) holds its next PUBACK until our ACK of the previous
            # one, and a delayed ACK stalls the end of every request by ~40 ms.
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        self._buf += data
        self._last_io = time.monotonic()
        return True

    def _packet(self, deadline: float) -> tuple[int, bytes]:
        """The next whole packet (handshake and ping only): (first byte, body)."""
        while True:
            kinds, _ids, _reasons, _pos = self._kernel.read_acks(self._buf, 0, len(self._buf))
            if len(kinds):
                first = self._buf[0]
                # The body starts after the remaining length; recompute its size.
                i, rem, mult = 1, 0, 1
                while True:
                    byte = self._buf[i]
                    i += 1
                    rem += (byte & 0x7F) * mult
                    mult *= 128
                    if not byte & 0x80:
                        break
                body = bytes(self._buf[i : i + rem])
                del self._buf[: i + rem]
                return first, body
            if not self._recv(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise PublishError("the broker did not answer in time")

    def _check_alive(self, timeout: float) -> None:
        """A connection idle for half its keep-alive may have been dropped: ask before using it."""
        if time.monotonic() - self._last_io < self.keepalive / 2:
            return
        self._send(b"\xc0\x00")  # PINGREQ
        deadline = time.monotonic() + timeout
        first, _body = self._packet(deadline)
        if first >> 4 != _PINGRESP:
            raise PublishError(f"expected PINGRESP, got packet type {first >> 4}")

    def window(self, qos: int) -> int:
        """Unacknowledged messages allowed on the wire at ``qos`` (1 or 2)."""
        if self.receive_maximum is not None:
            return self.receive_maximum
        return WINDOW_311[qos] if not self.v5 else 65535  # MQTT 5 without the property: 65535

    # -- publish -------------------------------------------------------------------------------------

    def publish(
        self,
        payloads: pa.Array,
        *,
        qos: int,
        retain: bool,
        timeout: float,
        topic: str | None = None,
        topics: pa.Array | None = None,
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Publish one message per payload; returns ``(failed, errors, retryable)`` for the messages
        the broker refused (MQTT 5 reason codes). Raises :class:`PublishError` when the connection
        failed (its ``acked`` says which messages were acknowledged before)."""
        n = len(payloads)
        step = 65535  # packet ids are unique within one run of 65535 messages
        if n > step:
            parts = []
            for start in range(0, n, step):
                try:
                    part = self.publish(
                        payloads.slice(start, step),
                        qos=qos,
                        retain=retain,
                        timeout=timeout,
                        topic=topic,
                        topics=None if topics is None else topics.slice(start, step),
                    )
                except PublishError as exc:
                    acked = np.zeros(n, dtype=bool)
                    acked[:start] = True
                    if exc.acked is not None:
                        acked[start : start + len(exc.acked)] = exc.acked
                    exc.acked = acked
                    raise
                parts.append((part[0] + start, part[1], part[2]))
            return (
                np.concatenate([p[0] for p in parts]),
                [e for p in parts for e in p[1]],
                np.concatenate([p[2] for p in parts]),
            )
        done = np.zeros(n, dtype=bool)
        try:
            return self._publish(payloads, qos, retain, timeout, topic, topics, done)
        except PublishError as exc:
            exc.acked = done
            raise

    def _publish(
        self,
        payloads: pa.Array,
        qos: int,
        retain: bool,
        timeout: float,
        topic: str | None,
        topics: pa.Array | None,
        done: np.ndarray,
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        k = self._kernel
        n = len(payloads)
        if qos > self.max_qos:
            raise PublishError(f"the broker accepts QoS <= {self.max_qos}, not {qos}", retryable=False)
        self._check_alive(timeout)
        first = self._next_id
        data, offsets = k.publish_packets(
            payloads, qos, retain, self.v5, first, topics=topics, topic=topic.encode() if topic else None
        )
        self._next_id = (first - 1 + n) % 65535 + 1
        view = memoryview(data)
        failed: list[int] = []
        errors: list[str] = []
        retry: list[bool] = []
        if self.max_packet is not None:
            sizes = np.diff(offsets)
            too_big = np.flatnonzero(sizes > self.max_packet)
            if len(too_big):
                # Never sent: the broker would close the connection (MQTT 5 "Maximum Packet Size").
                raise PublishError(
                    f"message {int(too_big[0])} is larger than the broker's maximum packet size "
                    f"({self.max_packet} bytes)",
                    retryable=False,
                )
        if qos == 0:
            self._send(view)
            done[:] = True
            return np.empty(0, np.int64), [], np.empty(0, bool)
        deadline = time.monotonic() + timeout
        sent = acked = 0
        inflight = 0
        window = self.window(qos)
        releases = bytearray()
        while acked < n:
            room = min(window - inflight, n - sent)
            if room > 0:
                self._send(view[offsets[sent] : offsets[sent + room]])
                sent += room
                inflight += room
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"{n - acked} of {n} messages not acknowledged within {timeout}s")
            self._recv(remaining)
            kinds, ids, reasons, pos = k.read_acks(self._buf, 0, len(self._buf))
            del self._buf[:pos]
            if not len(kinds):
                continue
            bad = (kinds != _PUBACK) & (kinds != _PUBREC) & (kinds != _PUBCOMP) & (kinds != _PINGRESP)
            if bad.any():
                kind = int(kinds[np.argmax(bad)])
                raise PublishError(
                    "the broker disconnected" if kind == _DISCONNECT else f"unexpected packet type {kind}"
                )
            rows = (ids - first) % 65535  # the message each acknowledgement is for
            refused = (reasons >= 0x80) & ((kinds == _PUBACK) | (kinds == _PUBREC))
            finished = (kinds == (_PUBACK if qos == 1 else _PUBCOMP)) | refused
            if qos == 2:
                for pid in ids[(kinds == _PUBREC) & ~refused].tolist():
                    releases += b"\x62\x02" + pid.to_bytes(2, "big")  # PUBREL
                if releases:
                    self._send(bytes(releases))
                    releases.clear()
            new = rows[finished & (rows < n)]
            new = new[~done[new]]
            done[new] = True
            acked += len(new)
            inflight -= len(new)
            for row, reason in zip(rows[refused].tolist(), reasons[refused].tolist(), strict=True):
                failed.append(row)
                errors.append(f"refused by the broker: reason code 0x{reason:02x}")
                retry.append(reason in _RETRYABLE_REASONS)
        order = np.argsort(np.asarray(failed, np.int64), kind="stable")
        return (
            np.asarray(failed, np.int64)[order],
            [errors[i] for i in order.tolist()],
            np.asarray(retry, bool)[order],
        )

    def disconnect(self) -> None:
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT (normal)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self._sock.close()
        except (OSError, AttributeError):
            pass

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
