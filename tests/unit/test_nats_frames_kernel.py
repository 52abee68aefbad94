"""``arrowflow._ext.nats_frames`` (scan / gather / ack_numbers) against the pure-Python reference, over
generated NATS protocol streams cut at every point, and fixed cases taken from a real nats-server."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import nats_frames as kernel
from arrowflow._reference import nats_frames as reference

# Bytes a nats-server 2.9 sent for a pull request of 100 (no_wait) on a stream holding two messages,
# the second published without headers, then the server's own PING, then the request's end.
REAL = (
    b"HMSG Ted53e1.a 1 $JS.ACK.Ted53e1.d.1.1.1.1796614826417097465.49 28 35\r\n"
    b'NATS/1.0\r\nNats-Msg-Id: 0\r\n\r\n{"i":0}\r\n'
    b"MSG Ted53e1.b 1 $JS.ACK.Ted53e1.d.2.2.2.1796614826418360821.48 7\r\n"
    b'{"i":1}\r\n'
    b"PING\r\n"
    b"HMSG _AFPULL.x.1 1  82 82\r\nNATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 50\r\n"
    b"Nats-Pending-Bytes: 0\r\n\r\n\r\n"
)


def _same_scan(buf: bytes, start: int, end: int, max_msgs: int) -> tuple:
    got = kernel.scan(buf, start, end, max_msgs)
    want = reference.scan(buf, start, end, max_msgs)
    assert got[0].shape == (len(want[0]), 6)
    assert got[0].tolist() == want[0].tolist(), (buf[start:end], max_msgs)
    assert got[1:] == want[1:], (buf[start:end], max_msgs, got[1:], want[1:])
    return got


def test_real_server_bytes() -> None:
    frames, pos, stop, ctl_end, _status, _subject = _same_scan(REAL, 0, len(REAL), 100)
    assert stop == kernel.CONTROL and REAL[pos:ctl_end] == b"PING\r\n"
    payloads, subjects, replies, numbers = kernel.gather(REAL, frames)
    assert payloads.type == pa.binary() and payloads.to_pylist() == [b'{"i":0}', b'{"i":1}']
    assert subjects.to_pylist() == ["Ted53e1.a", "Ted53e1.b"]
    assert replies.to_pylist()[1] == "$JS.ACK.Ted53e1.d.2.2.2.1796614826418360821.48"
    # delivered, stream seq, consumer seq, timestamp ns, pending
    assert numbers.tolist() == [[1, 1, 1, 1796614826417097465, 49], [2, 2, 2, 1796614826418360821, 48]]
    _, pos2, stop2, end2, status2, subject2 = _same_scan(REAL, ctl_end, len(REAL), 100)
    assert (stop2, status2, subject2, end2) == (kernel.STATUS, 408, b"_AFPULL.x.1", len(REAL))
    assert pos2 == ctl_end
    # Every prefix of the stream: complete frames only, never a read past the cut.
    for end in range(len(REAL) + 1):
        for max_msgs in (0, 1, 2, 3):
            _same_scan(REAL, 0, end, max_msgs)


def test_ack_subject_forms_and_refusals() -> None:
    replies = pa.array(
        [
            "$JS.ACK.S.c.3.10.4.1700000000000000000.0",
            "$JS.ACK.domain.accounthash.S.c.1.11.5.1700000000000000001.7",
            "$JS.ACK.domain.accounthash.S.c.1.12.6.1700000000000000002.8.randomtoken",
        ]
    )
    assert kernel.ack_numbers(replies).tolist() == [
        [3, 10, 4, 1700000000000000000, 0],
        [1, 11, 5, 1700000000000000001, 7],
        [1, 12, 6, 1700000000000000002, 8],
    ]
    for bad in (
        "_INBOX.x",
        "$JS.ACK.S.c.1.2.3.4",
        "$JS.ACK.S.c.1.x.3.4.5",
        "$JS.ACK.S.c.1.2.3.99999999999999999999.5",
    ):
        assert reference.ack_numbers(bad.encode()) is None
        with pytest.raises(ValueError, match="not a JetStream ack subject"):
            kernel.ack_numbers(pa.array(["$JS.ACK.S.c.1.2.3.4.5", bad]))
    with pytest.raises(ValueError, match="null"):
        kernel.ack_numbers(pa.array(["$JS.ACK.S.c.1.2.3.4.5", None]))


def test_a_message_without_ack_subject_is_refused_by_gather() -> None:
    buf = b"MSG a 1 3\r\nabc\r\n"
    frames, *_ = kernel.scan(buf, 0, len(buf), 10)
    assert frames.tolist() == [[4, 1, 0, 0, 11, 3]]
    with pytest.raises(ValueError, match="not a JetStream ack subject"):
        kernel.gather(buf, frames)
    with pytest.raises(ValueError, match="outside the buffer"):
        kernel.gather(buf, np.array([[4, 1, 0, 0, 11, 30]]))


def test_malformed_frames_stop_the_scan() -> None:
    for buf in (
        b"MSG a 1 x\r\nabc\r\n",  # size not a number
        b"MSG a 1 3\r\nabcd\r\n",  # payload longer than announced
        b"HMSG a 1 9 3\r\nabcdefghi\r\n",  # headers longer than the total
        b"MSG a\r\n",  # too few tokens
        b"MSG a 1 b c d e f 3\r\nabc\r\n",  # too many
        b"MSG a 1 3\nabc\r\n",  # bare \n
    ):
        got = _same_scan(buf, 0, len(buf), 10)
        assert got[2] == kernel.BAD, buf
    huge = b"MSG " + b"a" * 70_000
    assert _same_scan(huge, 0, len(huge), 10)[2] == kernel.BAD


# -- generated streams -----------------------------------------------------------------------------

tokens = st.text(alphabet="abcXYZ019_-$>*", min_size=1, max_size=8).map(str.encode)
subjects = st.lists(tokens, min_size=1, max_size=4).map(b".".join)
spaces = st.sampled_from([b" ", b"  ", b"\t", b" \t "])
numbers = st.integers(0, 2**63 - 1).map(lambda v: str(v).encode())
ack_subjects = st.one_of(
    st.tuples(tokens, tokens, st.lists(numbers, min_size=5, max_size=5)).map(
        lambda t: b".".join([b"$JS", b"ACK", t[0], t[1], *t[2]])
    ),
    st.tuples(tokens, tokens, tokens, tokens, st.lists(numbers, min_size=5, max_size=5), st.booleans()).map(
        lambda t: b".".join([b"$JS", b"ACK", t[0], t[1], t[2], t[3], *t[4]] + ([b"tok"] if t[5] else []))
    ),
    subjects,  # not an ack subject
)
payloads = st.binary(max_size=40)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["msg", "hmsg", "status", "control"]))
    sp = draw(spaces)
    if kind == "control":
        return draw(
            st.sampled_from([b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b"-ERR 'x'\r\n", b'INFO {"a":1}\r\n'])
        )
    subject = draw(subjects)
    sid = draw(st.integers(1, 99)).__str__().encode()
    if kind == "status":
        code = draw(
            st.sampled_from([b"404 No Messages", b"408 Request Timeout", b"409 Consumer Deleted", b"100"])
        )
        hdr = b"NATS/1.0 " + code + b"\r\n\r\n"
        return (
            b"HMSG"
            + sp
            + sp.join([subject, sid, b"%d" % len(hdr), b"%d" % len(hdr)])
            + b"\r\n"
            + hdr
            + b"\r\n"
        )
    reply = draw(st.one_of(st.none(), ack_subjects))
    data = draw(payloads)
    head = [subject, sid] + ([reply] if reply is not None else [])
    if kind == "msg":
        return b"MSG" + sp + sp.join([*head, b"%d" % len(data)]) + b"\r\n" + data + b"\r\n"
    hdr = draw(
        st.sampled_from([b"NATS/1.0\r\n\r\n", b"NATS/1.0\r\nNats-Msg-Id: 7\r\n\r\n", b"NATS/1.0 503\r\n\r\n"])
    )
    sizes = [b"%d" % len(hdr), b"%d" % (len(hdr) + len(data))]
    return b"HMSG" + sp + sp.join([*head, *sizes]) + b"\r\n" + hdr + data + b"\r\n"


streams = st.lists(frames(), max_size=8).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(streams, st.data())
def test_scan_matches_the_reference(stream: bytes, data: st.DataObject) -> None:
    junk = data.draw(st.binary(max_size=6))
    buf = stream + junk if data.draw(st.booleans()) else stream
    end = data.draw(st.integers(0, len(buf)))
    max_msgs = data.draw(st.integers(0, 10))
    got = _same_scan(buf, 0, end, max_msgs)
    # Resuming where a scan stopped (after a control or status frame) agrees too.
    if got[2] in (kernel.CONTROL, kernel.STATUS) and got[3] >= 0:
        _same_scan(buf, got[3], end if end >= got[3] else got[3], max_msgs)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_gather_matches_the_reference(stream: bytes) -> None:
    pos, recorded = 0, []
    while True:  # walk the whole stream, skipping control and status frames
        got, pos, stop, ctl_end, _status, _subject = kernel.scan(stream, pos, len(stream), 100)
        recorded += got.tolist()
        if stop in (kernel.CONTROL, kernel.STATUS) and ctl_end >= 0:
            pos = ctl_end
            continue
        break
    frames_arr = np.array(recorded, dtype=np.int64).reshape(-1, 6)
    replies = [stream[f[2] : f[2] + f[3]] for f in recorded]
    expected = [reference.ack_numbers(r) for r in replies]
    if any(e is None for e in expected):
        with pytest.raises(ValueError, match="not a JetStream ack subject"):
            kernel.gather(stream, frames_arr)
        return
    p, s, r, n = kernel.gather(stream, frames_arr)
    assert p.to_pylist() == [stream[f[4] : f[4] + f[5]] for f in recorded]
    assert s.to_pylist() == [stream[f[0] : f[0] + f[1]].decode() for f in recorded]
    assert r.to_pylist() == [x.decode() for x in replies]
    assert n.reshape(-1, 5).tolist() == expected


def test_the_pull_socket_is_used_only_where_it_connects_like_nats_py() -> None:
    from urllib.parse import urlparse

    from arrowflow.connectors._nats_pull import supported

    plain = urlparse("nats://127.0.0.1:4222")
    assert supported({}, plain)
    assert supported({"name": "x", "max_reconnect_attempts": 3, "reconnected_cb": print}, plain)
    for option in ("user", "password", "token", "tls", "nkeys_seed", "user_credentials", "signature_cb"):
        assert not supported({option: "x"}, plain), option
    assert not supported({}, urlparse("nats://u:p@127.0.0.1:4222"))
    assert not supported({}, urlparse("nats://token@127.0.0.1:4222"))
    assert not supported({}, urlparse("tls://127.0.0.1:4222"))
