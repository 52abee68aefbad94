"""A minimal MQTT 3.1.1 subscriber for the ``mqtt-sink`` output checks, run as its own process:
``python _mqtt_reader.py HOST PORT TOPIC COUNT OUT_FILE``.

It subscribes to ``TOPIC`` at QoS 0, prints ``ready`` once the SUBACK arrived, then writes the
payload of every PUBLISH it receives, one per line, to ``OUT_FILE`` until ``COUNT`` arrived or 30 s
pass without a message. Why not paho in the benchmark's process: Mosquitto drops QoS 0 messages for a
subscriber more than 1000 packets behind (``max_queued_messages``), and paho's per-message callbacks
(~10-20k messages/s, sharing the GIL with the method under test) fall that far behind a fast
publisher; a separate process parsing packets in a loop keeps up.
"""

from __future__ import annotations

import socket
import struct
import sys
import time


def _string(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        out += chunk
    return out


def main(host: str, port: int, topic: str, count: int, out: str) -> None:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    body = _string(b"MQTT") + bytes([4, 2]) + struct.pack(">H", 60) + _string(b"check-%d" % time.time_ns())
    sock.sendall(bytes([0x10, len(body)]) + body)
    if _read(sock, 4)[3] != 0:
        raise ConnectionError("CONNACK refused")
    sub = struct.pack(">H", 1) + _string(topic.encode()) + b"\x00"
    sock.sendall(bytes([0x82, len(sub)]) + sub)
    _read(sock, 5)  # SUBACK
    print("ready", flush=True)
    sock.settimeout(30)
    data = bytearray()
    p = 0
    got: list[bytes] = []
    while len(got) < count:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) - p >= 2:
            q, rem, mult = p + 1, 0, 1
            while q < len(data):
                byte = data[q]
                q += 1
                rem += (byte & 0x7F) * mult
                mult *= 128
                if not byte & 0x80:
                    break
            else:
                break  # the remaining length is not complete yet
            if q + rem > len(data):
                break
            if data[p] >> 4 == 3:  # PUBLISH at QoS 0: topic, then the payload
                topic_len = data[q] << 8 | data[q + 1]
                got.append(bytes(data[q + 2 + topic_len : q + rem]))
            p = q + rem
        if p > 1 << 22:
            del data[:p]
            p = 0
    with open(out, "wb") as f:
        f.writelines(g + b"\n" for g in got)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
