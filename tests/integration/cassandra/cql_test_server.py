"""A CQL native-protocol v4 **test server** over an in-memory table store. It is NOT Cassandra.

Written from ``native_protocol_v4.spec`` (apache/cassandra ``doc/native_protocol_v4.spec``) so that the
real DataStax ``cassandra-driver`` can talk to something over a socket where no Cassandra or Scylla
server can be installed. It implements only what arrowflow's tests need, and it is deliberately small:

* Frames (v4 header: version, flags, stream, opcode, length; no compression, no auth), STARTUP/READY,
  OPTIONS/SUPPORTED, REGISTER (accepted; no EVENT is ever pushed), QUERY, PREPARE, EXECUTE, BATCH
  (logged/unlogged/counter all applied statement by statement, without atomicity), result paging
  (``page_size`` + an opaque ``paging_state`` that resumes after the last row's (token, key)), and
  skip_metadata on EXECUTE.
* The ``system.local`` / ``system.peers`` rows the driver reads at connect (one node, no peers;
  ``system.peers_v2`` does not exist, so the driver falls back to ``system.peers`` as for Cassandra 3).
  Clients should run with ``schema_metadata_enabled=False, token_metadata_enabled=False``.
* CQL: ``USE``, ``CREATE KEYSPACE``/``CREATE TABLE`` (``IF NOT EXISTS``; ``WITH`` options ignored),
  ``DROP TABLE``/``DROP KEYSPACE``, ``TRUNCATE``, ``INSERT`` (``USING TTL/TIMESTAMP`` parsed and
  ignored; TTLs never expire), ``UPDATE ... SET c = v WHERE <full primary key>``, ``DELETE`` of whole
  rows, ``SELECT * | cols | COUNT(*)`` with ``WHERE`` equality on columns and
  ``token(pk...) > >= < <= ?`` (Murmur3, the driver's ``cassandra.murmur3``), ``LIMIT``.
  ``ALLOW FILTERING`` is never demanded (any WHERE is served by a scan).
* Types: ascii, text/varchar, int, bigint, smallint, tinyint, varint, counter (as bigint, no
  increments), double, float, boolean, blob, timestamp, date, time, decimal, uuid, timeuuid, inet,
  and list/set/map (frozen or not) of those. Values are stored as the serialized bytes the client
  sent, so the server never reinterprets them.
* Like Cassandra: a partition key longer than 65535 bytes is an ``Invalid`` error, null key columns
  are rejected, rows come back ordered by token, then partition key, then clustering key.

Fault injection for tests: :meth:`CqlTestServer.inject_write_error` makes writes of given partition
keys fail with a chosen server error (``write_timeout``, ``overloaded``, ``invalid``), a number of
times or forever.
"""

from __future__ import annotations

import decimal
import hashlib
import ipaddress
import re
import socket
import socketserver
import struct
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra.murmur3 import murmur3

__all__ = ["CqlError", "CqlTestServer"]

# ----------------------------------------------------------------------------------- protocol bits

OP_ERROR, OP_STARTUP, OP_READY, OP_OPTIONS, OP_SUPPORTED = 0x00, 0x01, 0x02, 0x05, 0x06
OP_QUERY, OP_RESULT, OP_PREPARE, OP_EXECUTE, OP_REGISTER, OP_BATCH = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0D

ERR_SERVER, ERR_PROTOCOL, ERR_OVERLOADED = 0x0000, 0x000A, 0x1001
ERR_WRITE_TIMEOUT, ERR_SYNTAX, ERR_INVALID, ERR_ALREADY_EXISTS, ERR_UNPREPARED = (
    0x1100,
    0x2000,
    0x2200,
    0x2400,
    0x2500,
)

RESULT_VOID, RESULT_ROWS, RESULT_SET_KEYSPACE, RESULT_PREPARED, RESULT_SCHEMA_CHANGE = 1, 2, 3, 4, 5

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1
UNSET = object()  # a bound value of length -2 ("unset": leave the column as it is)


class CqlError(Exception):
    """An ERROR response: ``code`` from the spec's section 9, ``extra`` the code-specific body."""

    def __init__(self, code: int, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _invalid(message: str) -> CqlError:
    return CqlError(ERR_INVALID, message)


# Writers for the spec's notation ([int], [short], [string], [bytes], ...).


def w_short(v: int) -> bytes:
    return struct.pack(">H", v)


def w_int(v: int) -> bytes:
    return struct.pack(">i", v)


def w_string(s: str) -> bytes:
    b = s.encode()
    return w_short(len(b)) + b


def w_long_string(s: str) -> bytes:
    b = s.encode()
    return w_int(len(b)) + b


def w_bytes(b: bytes | None) -> bytes:
    return w_int(-1) if b is None else w_int(len(b)) + b


def w_short_bytes(b: bytes) -> bytes:
    return w_short(len(b)) + b


class Reader:
    """Reads the spec's notation from a frame body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CqlError(ERR_PROTOCOL, "truncated frame body")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def int_(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def long(self) -> int:
        return int(struct.unpack(">q", self.take(8))[0])

    def string(self) -> str:
        return self.take(self.short()).decode()

    def long_string(self) -> str:
        return self.take(self.int_()).decode()

    def bytes_(self) -> bytes | None:
        n = self.int_()
        return None if n < 0 else self.take(n)

    def short_bytes(self) -> bytes:
        return self.take(self.short())

    def value(self) -> Any:
        n = self.int_()
        if n == -1:
            return None
        if n == -2:
            return UNSET
        return self.take(n)

    def string_map(self) -> dict[str, str]:
        return {self.string(): self.string() for _ in range(self.short())}


# ------------------------------------------------------------------------------------------ types

_SIMPLE_TYPES = {
    "custom": 0x0000,
    "ascii": 0x0001,
    "bigint": 0x0002,
    "blob": 0x0003,
    "boolean": 0x0004,
    "counter": 0x0005,
    "decimal": 0x0006,
    "double": 0x0007,
    "float": 0x0008,
    "int": 0x0009,
    "timestamp": 0x000B,
    "uuid": 0x000C,
    "varchar": 0x000D,
    "varint": 0x000E,
    "timeuuid": 0x000F,
    "inet": 0x0010,
    "date": 0x0011,
    "time": 0x0012,
    "smallint": 0x0013,
    "tinyint": 0x0014,
}
_COLLECTIONS = {"list": 0x0020, "map": 0x0021, "set": 0x0022}


@dataclass(frozen=True)
class CqlType:
    """A CQL type: ``name`` (``text`` is stored as ``varchar``) and collection ``params``."""

    name: str
    params: tuple[CqlType, ...] = ()
    frozen: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if self.params:
            return f"{self.name}<{', '.join(map(str, self.params))}>"
        return self.name

    def option(self) -> bytes:
        """The type as an [option] in result metadata."""
        if self.name in _COLLECTIONS:
            return w_short(_COLLECTIONS[self.name]) + b"".join(p.option() for p in self.params)
        return w_short(_SIMPLE_TYPES[self.name])


BIGINT = CqlType("bigint")
INT = CqlType("int")
TEXT = CqlType("varchar")

_INT_FORMATS = {"int": ">i", "bigint": ">q", "counter": ">q", "smallint": ">h", "tinyint": ">b", "time": ">q"}


def _varint_bytes(v: int) -> bytes:
    n = (v.bit_length() + 8) // 8
    return v.to_bytes(n, "big", signed=True)


def encode_value(t: CqlType, v: Any) -> bytes:
    """A Python value (as parsed from a CQL literal) -> its serialized form for type ``t``."""
    name = t.name
    try:
        if name in _INT_FORMATS:
            return struct.pack(_INT_FORMATS[name], int(v))
        if name == "timestamp":
            if isinstance(v, str):
                import datetime as dt

                d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                if d.tzinfo is None:
                    d = d.replace(tzinfo=dt.timezone.utc)
                v = int(d.timestamp() * 1000)
            return struct.pack(">q", int(v))
        if name in ("varchar", "ascii"):
            if not isinstance(v, str):
                raise _invalid(f"Invalid literal {v!r} for type {t}")
            return v.encode()
        if name == "boolean":
            return b"\x01" if v else b"\x00"
        if name == "double":
            return struct.pack(">d", float(v))
        if name == "float":
            return struct.pack(">f", float(v))
        if name == "blob":
            return bytes(v)
        if name in ("uuid", "timeuuid"):
            return (v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))).bytes
        if name == "inet":
            return ipaddress.ip_address(v).packed
        if name == "varint":
            return _varint_bytes(int(v))
        if name == "decimal":
            d = decimal.Decimal(str(v))
            sign, digits, exp = d.as_tuple()
            unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
            return struct.pack(">i", -int(exp)) + _varint_bytes(unscaled)
        if name == "date":
            import datetime as dt

            days = (dt.date.fromisoformat(v) - dt.date(1970, 1, 1)).days if isinstance(v, str) else int(v)
            return struct.pack(">I", days + 2**31)
        if name in ("list", "set"):
            items = list(v)
            return w_int(len(items)) + b"".join(w_bytes(encode_value(t.params[0], x)) for x in items)
        if name == "map":
            items = list(v.items()) if isinstance(v, dict) else list(v)
            return w_int(len(items)) + b"".join(
                w_bytes(encode_value(t.params[0], k)) + w_bytes(encode_value(t.params[1], x))
                for k, x in items
            )
    except CqlError:
        raise
    except (ValueError, TypeError, struct.error, decimal.InvalidOperation) as exc:
        raise _invalid(f"Invalid literal {v!r} for type {t}: {exc}") from exc
    raise _invalid(f"type {t} is not supported by the test server")


def sort_key(t: CqlType, b: bytes | None) -> Any:
    """A Python value ordering serialized values of ``t`` as Cassandra orders them (roughly)."""
    if b is None:
        return (0, b"")
    name = t.name
    if name in _INT_FORMATS or name == "timestamp":
        fmt = _INT_FORMATS.get(name, ">q")
        return (1, struct.unpack(fmt, b)[0])
    if name == "double":
        return (1, struct.unpack(">d", b)[0])
    if name == "float":
        return (1, struct.unpack(">f", b)[0])
    if name == "varint":
        return (1, int.from_bytes(b, "big", signed=True))
    return (1, b)


# ------------------------------------------------------------------------------------------ store


@dataclass
class Table:
    keyspace: str
    name: str
    columns: dict[str, CqlType]
    partition_key: list[str]
    clustering: list[str]
    # serialized partition key -> (token, {clustering values tuple -> {column: bytes}})
    partitions: dict[bytes, tuple[int, dict[tuple[bytes, ...], dict[str, bytes]]]] = field(
        default_factory=dict
    )
    version: int = 0
    _order: tuple[int, list[bytes]] | None = None

    def star_columns(self) -> list[str]:
        keys = self.partition_key + self.clustering
        return keys + sorted(c for c in self.columns if c not in keys)

    def sorted_partitions(self) -> list[bytes]:
        if self._order is None or self._order[0] != self.version:
            keys = sorted(self.partitions, key=lambda k: (self.partitions[k][0], k))
            self._order = (self.version, keys)
        return self._order[1]

    def ck_sort(self, ck: tuple[bytes, ...]) -> tuple[Any, ...]:
        return tuple(sort_key(self.columns[c], v) for c, v in zip(self.clustering, ck, strict=True))


def partition_key_bytes(values: Sequence[bytes]) -> bytes:
    """The partition key as Cassandra serializes it for the token (composite: length, bytes, 0)."""
    if len(values) == 1:
        return values[0]
    return b"".join(struct.pack(">H", len(v)) + v + b"\x00" for v in values)


def token_of(key: bytes) -> int:
    t = murmur3(key)
    return MAX_TOKEN if t == MIN_TOKEN else int(t)


# ----------------------------------------------------------------------------------------- parser

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<blob>0[xX][0-9a-fA-F]*)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?|-?NaN|-?Infinity)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<named>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<sym><=|>=|!=|[(),;.=<>\[\]{}:*?+\-])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else self.text


def tokenize(cql: str) -> list[Tok]:
    out = []
    pos = 0
    while pos < len(cql):
        m = _TOKEN_RE.match(cql, pos)
        if m is None:
            raise CqlError(ERR_SYNTAX, f"line 1:{pos} unexpected character {cql[pos]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "ws":
            continue
        out.append(Tok(kind, m.group()))
    return out


@dataclass
class Marker:
    """A bind marker: its index among the statement's markers and the type it binds."""

    index: int
    name: str
    type: CqlType
    spec: tuple[str, str, str] = ("", "", "")  # keyspace, table, column name for metadata


@dataclass
class Literal:
    value: Any


Term = Marker | Literal


@dataclass
class Condition:
    column: str | None  # None: a token(...) condition
    op: str
    term: Term


@dataclass
class Statement:
    kind: str
    keyspace: str = ""
    table: str = ""
    columns: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    count: bool = False
    limit: Term | None = None
    if_exists: bool = False
    create_columns: dict[str, CqlType] = field(default_factory=dict)
    partition_key: list[str] = field(default_factory=list)
    clustering: list[str] = field(default_factory=list)
    using: list[Term] = field(default_factory=list)


class Parser:
    """A recursive-descent parser for the CQL subset in the module docstring."""

    def __init__(self, cql: str, keyspace: str, store: Store) -> None:
        self.toks = tokenize(cql)
        self.i = 0
        self.keyspace = keyspace
        self.store = store
        self.markers: list[Marker] = []

    # -- token helpers
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def accept(self, *words: str) -> bool:
        t = self.peek()
        if t is not None and t.upper in words:
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            t = self.peek()
            raise CqlError(ERR_SYNTAX, f"expected {word!r}, found {t.text if t else 'end of input'!r}")

    def ident(self) -> str:
        t = self.peek()
        if t is None or t.kind not in ("ident", "qident"):
            raise CqlError(ERR_SYNTAX, f"expected an identifier, found {t.text if t else 'end of input'!r}")
        self.i += 1
        return t.text[1:-1].replace('""', '"') if t.kind == "qident" else t.text.lower()

    def qualified(self) -> tuple[str, str]:
        first = self.ident()
        if self.accept("."):
            return first, self.ident()
        if not self.keyspace:
            raise _invalid(
                "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"
            )
        return self.keyspace, first

    def done(self) -> None:
        self.accept(";")
        if self.peek() is not None:
            raise CqlError(ERR_SYNTAX, f"unexpected input at {self.peek().text!r}")  # type: ignore[union-attr]

    # -- types and terms
    def cql_type(self) -> CqlType:
        name = self.ident()
        if name == "frozen":
            self.expect("<")
            inner = self.cql_type()
            self.expect(">")
            return CqlType(inner.name, inner.params, frozen=True)
        if name in ("list", "set", "map"):
            self.expect("<")
            params = [self.cql_type()]
            if name == "map":
                self.expect(",")
                params.append(self.cql_type())
            self.expect(">")
            return CqlType(name, tuple(params))
        if name == "text":
            name = "varchar"
        if name not in _SIMPLE_TYPES or name == "custom":
            raise _invalid(f"Unknown type {name}")
        return CqlType(name)

    def term(self, t: CqlType, spec: tuple[str, str, str]) -> Term:
        tok = self.peek()
        if tok is None:
            raise CqlError(ERR_SYNTAX, "expected a term, found end of input")
        if tok.text == "?" or tok.kind == "named":
            self.i += 1
            name = tok.text[1:] if tok.kind == "named" else spec[2]
            m = Marker(len(self.markers), name, t, spec)
            self.markers.append(m)
            return m
        return Literal(self.literal())

    def literal(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise CqlError(ERR_SYNTAX, "expected a literal")
        self.i += 1
        if tok.kind == "string":
            return tok.text[1:-1].replace("''", "'")
        if tok.kind == "number":
            txt = tok.text
            if re.fullmatch(r"-?\d+", txt):
                return int(txt)
            return float(txt.replace("Infinity", "inf"))
        if tok.kind == "uuid":
            return uuid.UUID(tok.text)
        if tok.kind == "blob":
            return bytes.fromhex(tok.text[2:])
        if tok.upper in ("TRUE", "FALSE"):
            return tok.upper == "TRUE"
        if tok.upper == "NULL":
            return None
        if tok.text == "[":
            items = []
            while not self.accept("]"):
                items.append(self.literal())
                self.accept(",")
            return items
        if tok.text == "{":
            items_l: list[Any] = []
            pairs: dict[Any, Any] = {}
            while not self.accept("}"):
                k = self.literal()
                if self.accept(":"):
                    pairs[k] = self.literal()
                else:
                    items_l.append(k)
                self.accept(",")
            return pairs if pairs else items_l
        raise CqlError(ERR_SYNTAX, f"unexpected token {tok.text!r} where a literal was expected")

    # -- statements
    def parse(self) -> Statement:
        t = self.peek()
        if t is None:
            raise CqlError(ERR_SYNTAX, "empty statement")
        word = t.upper
        self.i += 1
        if word == "USE":
            st = Statement("use", keyspace=self.ident())
        elif word == "CREATE":
            st = self.create()
        elif word == "DROP":
            st = self.drop()
        elif word == "TRUNCATE":
            self.accept("TABLE")
            ks, tb = self.qualified()
            st = Statement("truncate", keyspace=ks, table=tb)
        elif word == "INSERT":
            st = self.insert()
        elif word == "UPDATE":
            st = self.update()
        elif word == "DELETE":
            st = self.delete()
        elif word == "SELECT":
            st = self.select()
        else:
            raise CqlError(ERR_SYNTAX, f"line 1:0 no viable alternative at input {t.text!r}")
        self.done()
        st.markers = self.markers
        return st

    def if_not_exists(self) -> bool:
        if self.accept("IF"):
            self.expect("NOT")
            self.expect("EXISTS")
            return True
        return False

    def create(self) -> Statement:
        if self.accept("KEYSPACE", "SCHEMA"):
            ine = self.if_not_exists()
            name = self.ident()
            self.i = len(self.toks)  # WITH replication = {...}: ignored
            return Statement("create_keyspace", keyspace=name, if_exists=ine)
        self.expect("TABLE")
        ine = self.if_not_exists()
        ks, tb = self.qualified()
        self.expect("(")
        cols: dict[str, CqlType] = {}
        pk: list[str] = []
        ck: list[str] = []
        while True:
            if self.accept("PRIMARY"):
                self.expect("KEY")
                self.expect("(")
                if self.accept("("):
                    pk.append(self.ident())
                    while self.accept(","):
                        pk.append(self.ident())
                    self.expect(")")
                else:
                    pk.append(self.ident())
                while self.accept(","):
                    ck.append(self.ident())
                self.expect(")")
            else:
                name = self.ident()
                cols[name] = self.cql_type()
                if self.accept("STATIC"):
                    pass
                if self.accept("PRIMARY"):
                    self.expect("KEY")
                    pk = [name]
            if self.accept(")"):
                break
            self.expect(",")
        self.i = len(self.toks)  # WITH options: ignored
        if not pk:
            raise _invalid("No PRIMARY KEY specifed (exactly one required)")
        for c in pk + ck:
            if c not in cols:
                raise _invalid(f"Unknown definition {c} referenced in PRIMARY KEY")
        return Statement(
            "create_table",
            keyspace=ks,
            table=tb,
            if_exists=ine,
            create_columns=cols,
            partition_key=pk,
            clustering=ck,
        )

    def drop(self) -> Statement:
        what = "keyspace" if self.accept("KEYSPACE") else ("table" if self.accept("TABLE") else "")
        if not what:
            raise CqlError(ERR_SYNTAX, "only DROP KEYSPACE and DROP TABLE are supported")
        ie = False
        if self.accept("IF"):
            self.expect("EXISTS")
            ie = True
        if what == "keyspace":
            return Statement("drop_keyspace", keyspace=self.ident(), if_exists=ie)
        ks, tb = self.qualified()
        return Statement("drop_table", keyspace=ks, table=tb, if_exists=ie)

    def _table(self, ks: str, tb: str) -> Table:
        return self.store.table(ks, tb)

    def using(self, st: Statement) -> None:
        if self.accept("USING"):
            while True:
                if not self.accept("TTL", "TIMESTAMP"):
                    raise CqlError(ERR_SYNTAX, "expected TTL or TIMESTAMP after USING")
                st.using.append(self.term(INT, ("", "", "[ttl]")))
                if not self.accept("AND"):
                    break

    def insert(self) -> Statement:
        self.expect("INTO")
        ks, tb = self.qualified()
        table = self._table(ks, tb)
        self.expect("(")
        cols = [self.ident()]
        while self.accept(","):
            cols.append(self.ident())
        self.expect(")")
        self.expect("VALUES")
        self.expect("(")
        terms = []
        for k, c in enumerate(cols):
            if c not in table.columns:
                raise _invalid(f"Undefined column name {c} in table {ks}.{tb}")
            if k:
                self.expect(",")
            terms.append(self.term(table.columns[c], (ks, tb, c)))
        self.expect(")")
        st = Statement("insert", keyspace=ks, table=tb, columns=cols, terms=terms)
        if self.accept("IF"):
            raise _invalid("lightweight transactions are not supported by the test server")
        self.using(st)
        return st

    def where(self, table: Table) -> list[Condition]:
        conds = []
        if not self.accept("WHERE"):
            return conds
        while True:
            if self.accept("TOKEN"):
                self.expect("(")
                cols = [self.ident()]
                while self.accept(","):
                    cols.append(self.ident())
                self.expect(")")
                if cols != table.partition_key:
                    raise _invalid(
                        f"The token function arguments must be the partition key {table.partition_key}"
                    )
                op = self.op()
                conds.append(Condition(None, op, self.term(BIGINT, ("", "", "partition key token"))))
            else:
                col = self.ident()
                if col not in table.columns:
                    raise _invalid(f"Undefined column name {col}")
                op = self.op()
                conds.append(
                    Condition(col, op, self.term(table.columns[col], (table.keyspace, table.name, col)))
                )
            if not self.accept("AND"):
                return conds

    def op(self) -> str:
        t = self.peek()
        if t is None or t.text not in ("=", "<", ">", "<=", ">="):
            raise CqlError(ERR_SYNTAX, f"expected a comparison operator, found {t.text if t else 'end'!r}")
        self.i += 1
        return t.text

    def update(self) -> Statement:
        ks, tb = self.qualified()
        table = self._table(ks, tb)
        st = Statement("update", keyspace=ks, table=tb)
        self.using(st)
        self.expect("SET")
        while True:
            c = self.ident()
            if c not in table.columns:
                raise _invalid(f"Undefined column name {c}")
            self.expect("=")
            st.columns.append(c)
            st.terms.append(self.term(table.columns[c], (ks, tb, c)))
            if not self.accept(","):
                break
        st.where = self.where(table)
        return st

    def delete(self) -> Statement:
        self.expect("FROM")
        ks, tb = self.qualified()
        table = self._table(ks, tb)
        st = Statement("delete", keyspace=ks, table=tb)
        self.using(st)
        st.where = self.where(table)
        return st

    def select(self) -> Statement:
        st = Statement("select")
        cols: list[str] = []
        if self.accept("*"):
            pass
        elif self.accept("COUNT"):
            self.expect("(")
            if not self.accept("*"):
                self.ident()
            self.expect(")")
            st.count = True
        else:
            cols.append(self.ident())
            while self.accept(","):
                cols.append(self.ident())
        self.expect("FROM")
        ks, tb = self.qualified()
        table = self._table(ks, tb)
        st.keyspace, st.table = ks, tb
        for c in cols:
            if c not in table.columns:
                raise _invalid(f"Undefined column name {c} in selection clause")
        st.columns = cols or ([] if st.count else table.star_columns())
        st.where = self.where(table)
        if self.accept("LIMIT"):
            st.limit = self.term(INT, ("", "", "[limit]"))
        if self.accept("ALLOW"):
            self.expect("FILTERING")
        return st


# ------------------------------------------------------------------------------------------ store


def _local_tables() -> list[tuple[str, dict[str, CqlType], list[str]]]:
    inet, uid, text = CqlType("inet"), CqlType("uuid"), TEXT
    tokens = CqlType("set", (TEXT,))
    local = {
        "key": text,
        "bootstrapped": text,
        "broadcast_address": inet,
        "cluster_name": text,
        "cql_version": text,
        "data_center": text,
        "host_id": uid,
        "listen_address": inet,
        "native_protocol_version": text,
        "partitioner": text,
        "rack": text,
        "release_version": text,
        "rpc_address": inet,
        "schema_version": uid,
        "tokens": tokens,
    }
    peers = {
        "peer": inet,
        "data_center": text,
        "host_id": uid,
        "preferred_ip": inet,
        "rack": text,
        "release_version": text,
        "rpc_address": inet,
        "native_transport_address": inet,
        "schema_version": uid,
        "tokens": tokens,
    }
    return [("local", local, ["key"]), ("peers", peers, ["peer"])]


@dataclass
class Fault:
    keyspace: str
    table: str
    keys: set[bytes]
    kind: str
    remaining: int | None


class Store:
    """Keyspaces of in-memory tables, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.keyspaces: dict[str, dict[str, Table]] = {"system": {}}
        self.schema_version = uuid.uuid4()
        self.faults: list[Fault] = []
        for name, cols, pk in _local_tables():
            self.keyspaces["system"][name] = Table("system", name, cols, pk, [])
        schema_cols = {
            "keyspace_name": TEXT,
            "table_name": TEXT,
            "column_name": TEXT,
            "clustering_order": TEXT,
            "kind": TEXT,
            "position": INT,
            "type": TEXT,
        }
        self.keyspaces["system_schema"] = {
            "columns": Table(
                "system_schema", "columns", schema_cols, ["keyspace_name"], ["table_name", "column_name"]
            )
        }

    def describe_table(self, table: Table) -> None:
        """Rows of ``system_schema.columns`` for ``table`` (what drivers and tools read)."""
        columns = self.keyspaces["system_schema"]["columns"]
        for name, t in table.columns.items():
            if name in table.partition_key:
                kind, pos = "partition_key", table.partition_key.index(name)
            elif name in table.clustering:
                kind, pos = "clustering", table.clustering.index(name)
            else:
                kind, pos = "regular", -1
            row = {
                "keyspace_name": table.keyspace,
                "table_name": table.name,
                "column_name": name,
                "clustering_order": "asc" if kind == "clustering" else "none",
                "kind": kind,
                "position": pos,
                "type": str(t).replace("varchar", "text"),
            }
            self.write(columns, {c: encode_value(columns.columns[c], v) for c, v in row.items()})

    def forget_table(self, keyspace: str, name: str) -> None:
        columns = self.keyspaces["system_schema"]["columns"]
        entry = columns.partitions.get(keyspace.encode())
        if entry is not None:
            for ck in [ck for ck in entry[1] if ck[0] == name.encode()]:
                del entry[1][ck]

    def table(self, ks: str, tb: str) -> Table:
        try:
            return self.keyspaces[ks][tb]
        except KeyError:
            if ks not in self.keyspaces:
                raise _invalid(f"Keyspace {ks} does not exist") from None
            raise _invalid(f"unconfigured table {tb}") from None

    def init_local(self, host: str) -> None:
        local = self.keyspaces["system"]["local"]
        row = {
            "key": "local",
            "bootstrapped": "COMPLETED",
            "broadcast_address": host,
            "cluster_name": "arrowflow-cql-test-server",
            "cql_version": "3.4.5",
            "data_center": "datacenter1",
            "host_id": uuid.UUID(int=1),
            "listen_address": host,
            "native_protocol_version": "4",
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "rack": "rack1",
            "release_version": "3.11.99-arrowflow-test-server",
            "rpc_address": host,
            "schema_version": self.schema_version,
            "tokens": ["0"],
        }
        self.write(local, {c: encode_value(local.columns[c], v) for c, v in row.items()})

    def bump_schema(self) -> None:
        self.schema_version = uuid.uuid4()
        local = self.keyspaces["system"]["local"]
        self.write(
            local,
            {"key": b"local", "schema_version": self.schema_version.bytes},
        )

    def write(self, table: Table, values: dict[str, Any]) -> None:
        """Upsert one row; ``values`` holds serialized bytes, ``None`` (delete the cell) or ``UNSET``."""
        keyparts = []
        for c in table.partition_key:
            v = values.get(c)
            if v is None or v is UNSET:
                raise _invalid(f"Invalid null value in condition for column {c}")
            keyparts.append(v)
        ck = []
        for c in table.clustering:
            v = values.get(c)
            if v is None or v is UNSET:
                raise _invalid(f"Invalid null value in condition for column {c}")
            ck.append(v)
        pk = partition_key_bytes(keyparts)
        if len(pk) > 65535:
            raise _invalid(f"Key length of {len(pk)} is longer than maximum of 65535")
        with self.lock:
            self._check_faults(table, pk)
            entry = table.partitions.get(pk)
            if entry is None:
                entry = (token_of(pk), {})
                table.partitions[pk] = entry
                table.version += 1
            row = entry[1].setdefault(tuple(ck), {})
            for c, v in values.items():
                if v is UNSET:
                    continue
                t = table.columns[c]
                if v == b"\x00\x00\x00\x00" and t.name in _COLLECTIONS and not t.frozen:
                    v = None  # an empty non-frozen collection is no value, as in Cassandra
                if v is None:
                    row.pop(c, None)
                else:
                    row[c] = v

    def _check_faults(self, table: Table, pk: bytes) -> None:
        for f in self.faults:
            if f.keyspace == table.keyspace and f.table == table.name and pk in f.keys:
                if f.remaining is not None:
                    if f.remaining <= 0:
                        continue
                    f.remaining -= 1
                if f.kind == "write_timeout":
                    extra = w_short(1) + w_int(0) + w_int(1) + w_string("SIMPLE")
                    raise CqlError(
                        ERR_WRITE_TIMEOUT, "Operation timed out - received only 0 responses.", extra
                    )
                if f.kind == "overloaded":
                    raise CqlError(ERR_OVERLOADED, "injected overload")
                raise _invalid(f"injected invalid request for key 0x{pk.hex()}")


# --------------------------------------------------------------------------------------- execution


@dataclass
class Prepared:
    statement: Statement
    query: str
    keyspace: str


class Result:
    """A RESULT body builder."""

    @staticmethod
    def void() -> bytes:
        return w_int(RESULT_VOID)

    @staticmethod
    def metadata(
        specs: Sequence[tuple[str, str, str, CqlType]], paging_state: bytes | None, no_meta: bool
    ) -> bytes:
        flags = 0
        if paging_state is not None:
            flags |= 0x0002
        if no_meta:
            flags |= 0x0004
        out = w_int(flags) + w_int(len(specs))
        if paging_state is not None:
            out += w_bytes(paging_state)
        if no_meta:
            return out
        for ks, tb, name, t in specs:
            out += w_string(ks) + w_string(tb) + w_string(name) + t.option()
        return out


def _bind(term: Term, values: Sequence[Any], default_type: CqlType) -> Any:
    if isinstance(term, Marker):
        if term.index >= len(values):
            raise _invalid(f"There were {len(values)} markers(?) in CQL but {term.index + 1} needed")
        return values[term.index]
    if term.value is None:
        return None
    return encode_value(default_type, term.value)


class Engine:
    """Executes parsed statements against a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def execute(
        self,
        st: Statement,
        values: Sequence[Any],
        page_size: int,
        paging_state: bytes | None,
        skip_metadata: bool,
        conn: Connection,
    ) -> bytes:
        store = self.store
        with store.lock:
            if st.kind == "use":
                if st.keyspace not in store.keyspaces:
                    raise _invalid(f"Keyspace '{st.keyspace}' does not exist")
                conn.keyspace = st.keyspace
                return w_int(RESULT_SET_KEYSPACE) + w_string(st.keyspace)
            if st.kind == "create_keyspace":
                if st.keyspace in store.keyspaces:
                    if st.if_exists:
                        return Result.void()
                    raise CqlError(
                        ERR_ALREADY_EXISTS,
                        f"Keyspace {st.keyspace} already exists",
                        w_string(st.keyspace) + w_string(""),
                    )
                store.keyspaces[st.keyspace] = {}
                store.bump_schema()
                return self._schema_change("CREATED", "KEYSPACE", st.keyspace)
            if st.kind == "create_table":
                if st.keyspace not in store.keyspaces:
                    raise CqlError(
                        0x2300, f"Cannot add table '{st.table}' to non existing keyspace '{st.keyspace}'."
                    )
                if st.table in store.keyspaces[st.keyspace]:
                    if st.if_exists:
                        return Result.void()
                    raise CqlError(
                        ERR_ALREADY_EXISTS,
                        f"Table {st.keyspace}.{st.table} already exists",
                        w_string(st.keyspace) + w_string(st.table),
                    )
                table = Table(st.keyspace, st.table, st.create_columns, st.partition_key, st.clustering)
                store.keyspaces[st.keyspace][st.table] = table
                store.describe_table(table)
                store.bump_schema()
                return self._schema_change("CREATED", "TABLE", st.keyspace, st.table)
            if st.kind == "drop_keyspace":
                dropped = store.keyspaces.pop(st.keyspace, None)
                if dropped is None and not st.if_exists:
                    raise CqlError(0x2300, f"Cannot drop non existing keyspace '{st.keyspace}'.")
                for name in dropped or {}:
                    store.forget_table(st.keyspace, name)
                store.bump_schema()
                return self._schema_change("DROPPED", "KEYSPACE", st.keyspace)
            if st.kind == "drop_table":
                if store.keyspaces.get(st.keyspace, {}).pop(st.table, None) is None and not st.if_exists:
                    raise CqlError(0x2300, f"Cannot drop non existing table '{st.table}'.")
                store.forget_table(st.keyspace, st.table)
                store.bump_schema()
                return self._schema_change("DROPPED", "TABLE", st.keyspace, st.table)
            table = store.table(st.keyspace, st.table)
            if st.kind == "truncate":
                table.partitions.clear()
                table.version += 1
                return Result.void()
            if st.kind == "insert":
                row = {
                    c: _bind(t, values, table.columns[c]) for c, t in zip(st.columns, st.terms, strict=True)
                }
                store.write(table, row)
                return Result.void()
            if st.kind == "update":
                row = {
                    c: _bind(t, values, table.columns[c]) for c, t in zip(st.columns, st.terms, strict=True)
                }
                for cond in st.where:
                    if cond.column is None or cond.op != "=":
                        raise _invalid("UPDATE needs the full primary key with '=' in WHERE")
                    row[cond.column] = _bind(cond.term, values, table.columns[cond.column])
                store.write(table, row)
                return Result.void()
            if st.kind == "delete":
                for pk, ck, _ in list(self._scan(table, st, values, None)):
                    table.partitions[pk][1].pop(ck, None)
                    if not table.partitions[pk][1]:
                        del table.partitions[pk]
                        table.version += 1
                return Result.void()
            return self._select(table, st, values, page_size, paging_state, skip_metadata)

    def _schema_change(self, change: str, target: str, ks: str, tb: str | None = None) -> bytes:
        out = w_int(RESULT_SCHEMA_CHANGE) + w_string(change) + w_string(target) + w_string(ks)
        if tb is not None:
            out += w_string(tb)
        return out

    def _scan(
        self, table: Table, st: Statement, values: Sequence[Any], after: tuple[int, bytes, Any] | None
    ) -> Iterable[tuple[bytes, tuple[bytes, ...], dict[str, bytes]]]:
        eq: dict[str, bytes | None] = {}
        others: list[tuple[str, str, Any]] = []
        token_conds: list[tuple[str, int]] = []
        for cond in st.where:
            if cond.column is None:
                raw = _bind(cond.term, values, BIGINT)
                if raw is None or raw is UNSET:
                    raise _invalid("Invalid null value for partition key token")
                token_conds.append((cond.op, struct.unpack(">q", raw)[0]))
                continue
            v = _bind(cond.term, values, table.columns[cond.column])
            if v is UNSET:
                raise _invalid(f"Invalid unset value for column {cond.column}")
            if cond.op == "=":
                eq[cond.column] = v
            else:
                others.append((cond.column, cond.op, sort_key(table.columns[cond.column], v)))
        if all(c in eq for c in table.partition_key):
            parts = [eq[c] for c in table.partition_key]
            if any(p is None for p in parts):
                return
            pk = partition_key_bytes(parts)  # type: ignore[arg-type]
            candidates = [pk] if pk in table.partitions else []
        else:
            candidates = table.sorted_partitions()
        ops = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        for pk in candidates:
            token, rows = table.partitions[pk]
            if any(not ops[op](token, bound) for op, bound in token_conds):
                continue
            if after is not None and (token, pk) < after[:2]:
                continue
            for ck in sorted(rows, key=table.ck_sort):
                if after is not None and (token, pk) == after[:2] and table.ck_sort(ck) <= after[2]:
                    continue
                row = rows[ck]
                full = dict(row)
                ok = True
                for c, v in eq.items():
                    if c in table.partition_key:
                        continue
                    if full.get(c) != v:
                        ok = False
                        break
                if ok:
                    for c, op, key in others:
                        if not ops[op](sort_key(table.columns[c], full.get(c)), key):
                            ok = False
                            break
                if ok:
                    yield pk, ck, full

    def _select(
        self,
        table: Table,
        st: Statement,
        values: Sequence[Any],
        page_size: int,
        paging_state: bytes | None,
        skip_metadata: bool,
    ) -> bytes:
        after = _decode_paging_state(table, paging_state) if paging_state else None
        limit = None
        if st.limit is not None:
            raw = _bind(st.limit, values, INT)
            limit = struct.unpack(">i", raw)[0]
        if st.count:
            n = sum(1 for _ in self._scan(table, st, values, None))
            meta = Result.metadata([(table.keyspace, table.name, "count", BIGINT)], None, skip_metadata)
            return w_int(RESULT_ROWS) + meta + w_int(1) + w_bytes(struct.pack(">q", n))
        specs = [(table.keyspace, table.name, c, table.columns[c]) for c in st.columns]
        rows_out: list[bytes] = []
        last: tuple[int, bytes, tuple[bytes, ...]] | None = None
        more = False
        cap = page_size if page_size > 0 else None
        if limit is not None:
            cap = limit if cap is None else min(cap, limit)
        for pk, ck, row in self._scan(table, st, values, after):
            if cap is not None and len(rows_out) >= cap:
                more = limit is None or len(rows_out) < limit
                break
            rows_out.append(b"".join(w_bytes(row.get(c)) for c in st.columns))
            last = (table.partitions[pk][0], pk, ck)
        state = _encode_paging_state(last) if more and last is not None else None
        meta = Result.metadata(specs, state, skip_metadata)
        return w_int(RESULT_ROWS) + meta + w_int(len(rows_out)) + b"".join(rows_out)


def _encode_paging_state(last: tuple[int, bytes, tuple[bytes, ...]]) -> bytes:
    token, pk, ck = last
    out = struct.pack(">q", token) + w_bytes(pk) + w_short(len(ck))
    return out + b"".join(w_bytes(v) for v in ck)


def _decode_paging_state(table: Table, state: bytes) -> tuple[int, bytes, Any]:
    try:
        r = Reader(state)
        token = r.long()
        pk = r.bytes_() or b""
        ck = tuple(r.bytes_() or b"" for _ in range(r.short()))
    except (CqlError, struct.error) as exc:
        raise CqlError(ERR_PROTOCOL, "Invalid value for the paging state") from exc
    return token, pk, table.ck_sort(ck)


# ------------------------------------------------------------------------------------- connections


class Connection(socketserver.BaseRequestHandler):
    """One client connection: frames are handled in order, each answered on its stream id."""

    server: _TcpServer
    keyspace: str

    def handle(self) -> None:
        self.keyspace = ""
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while True:
                data = sock.recv(1 << 18)
                if not data:
                    return
                buf += data
                # Answer every complete frame received so far with one send: a pipelining client
                # (the driver keeps many requests in flight) gets its responses in few segments.
                out: list[bytes] = []
                pos = 0
                while len(buf) - pos >= 9:
                    version, flags, stream, opcode, length = struct.unpack_from(">BBhBi", buf, pos)
                    if len(buf) - pos - 9 < length:
                        break
                    body = bytes(buf[pos + 9 : pos + 9 + length])
                    pos += 9 + length
                    out.append(self.answer(version, flags, stream, opcode, body))
                del buf[:pos]
                if out:
                    sock.sendall(b"".join(out))
        except (ConnectionError, OSError):
            return

    def answer(self, version: int, flags: int, stream: int, opcode: int, body: bytes) -> bytes:
        """One response frame for one request frame."""
        if version & 0x7F != 4:
            # The spec: answer a protocol error in a supported version (the driver then downgrades).
            msg = w_int(ERR_PROTOCOL) + w_string(
                f"Invalid or unsupported protocol version ({version & 0x7F}); supported versions are (4/v4)"
            )
            return struct.pack(">BBhBi", 0x84, 0, stream, OP_ERROR, len(msg)) + msg
        try:
            op, out = self.dispatch(opcode, flags, body)
        except CqlError as exc:
            op, out = OP_ERROR, w_int(exc.code) + w_string(exc.message) + exc.extra
        except Exception as exc:  # a bug in the test server: report it to the client
            op, out = OP_ERROR, w_int(ERR_SERVER) + w_string(f"test server error: {exc!r}")
        return struct.pack(">BBhBi", 0x84, 0, stream, op, len(out)) + out

    def dispatch(self, opcode: int, flags: int, body: bytes) -> tuple[int, bytes]:
        srv = self.server.owner
        r = Reader(body)
        if flags & 0x04:  # custom payload: a [bytes map] before the body
            for _ in range(r.short()):
                r.string()
                r.bytes_()
        if opcode == OP_OPTIONS:
            out = w_short(2)
            out += w_string("CQL_VERSION") + w_short(1) + w_string("3.4.5")
            out += w_string("COMPRESSION") + w_short(0)
            return OP_SUPPORTED, out
        if opcode == OP_STARTUP:
            opts = r.string_map()
            if opts.get("COMPRESSION"):
                raise CqlError(ERR_PROTOCOL, f"Unknown compression algorithm: {opts['COMPRESSION']}")
            return OP_READY, b""
        if opcode == OP_REGISTER:
            return OP_READY, b""
        if opcode == OP_QUERY:
            query = r.long_string()
            st = Parser(query, self.keyspace, srv.store).parse()
            return OP_RESULT, self._run(st, r, named_ok=True)
        if opcode == OP_PREPARE:
            query = r.long_string()
            st = Parser(query, self.keyspace, srv.store).parse()
            qid = hashlib.md5(f"{self.keyspace}\x00{query}".encode()).digest()
            with srv.lock:
                srv.prepared[qid] = Prepared(st, query, self.keyspace)
            return OP_RESULT, self._prepared_result(qid, st)
        if opcode == OP_EXECUTE:
            qid = r.short_bytes()
            with srv.lock:
                prep = srv.prepared.get(qid)
            if prep is None:
                raise CqlError(ERR_UNPREPARED, "Prepared query not found", w_short_bytes(qid))
            srv.count("execute")
            return OP_RESULT, self._run(prep.statement, r, named_ok=False)
        if opcode == OP_BATCH:
            return OP_RESULT, self._batch(r)
        raise CqlError(ERR_PROTOCOL, f"unsupported opcode 0x{opcode:02x}")

    def _read_params(self, r: Reader) -> tuple[list[Any], int, bytes | None, bool, list[str] | None]:
        r.short()  # consistency: the test server has one replica
        flags = r.byte()
        values: list[Any] = []
        names: list[str] | None = None
        if flags & 0x01:
            n = r.short()
            if flags & 0x40:
                names = []
                for _ in range(n):
                    names.append(r.string())
                    values.append(r.value())
            else:
                values = [r.value() for _ in range(n)]
        page_size = r.int_() if flags & 0x04 else -1
        paging_state = r.bytes_() if flags & 0x08 else None
        if flags & 0x10:
            r.short()
        if flags & 0x20:
            r.long()
        return values, page_size, paging_state, bool(flags & 0x02), names

    def _run(self, st: Statement, r: Reader, *, named_ok: bool) -> bytes:
        values, page_size, paging_state, skip_meta, names = self._read_params(r)
        if names is not None:
            by_name = dict(zip(names, values, strict=True))
            values = [by_name.get(m.name, UNSET) for m in st.markers]
        if len(values) != len(st.markers):
            raise _invalid(
                f"There were {len(st.markers)} markers(?) in CQL but {len(values)} bound variables"
            )
        return self.server.owner.engine.execute(st, values, page_size, paging_state, skip_meta, self)

    def _prepared_result(self, qid: bytes, st: Statement) -> bytes:
        specs = [(m.spec[0], m.spec[1], m.spec[2] or m.name, m.type) for m in st.markers]
        # partition key indexes: the marker binding each partition key column, when all are bound.
        pk_idx: list[int] = []
        if st.kind in ("insert", "update", "delete", "select") and st.table:
            table = self.server.owner.store.table(st.keyspace, st.table)
            pos: dict[str, int] = {}
            for c, t in zip(st.columns, st.terms, strict=False):
                if st.kind == "insert" and isinstance(t, Marker):
                    pos[c] = t.index
            for cond in st.where:
                if cond.column is not None and cond.op == "=" and isinstance(cond.term, Marker):
                    pos[cond.column] = cond.term.index
            if all(c in pos for c in table.partition_key):
                pk_idx = [pos[c] for c in table.partition_key]
        out = w_int(RESULT_PREPARED) + w_short_bytes(qid)
        out += w_int(0) + w_int(len(specs)) + w_int(len(pk_idx)) + b"".join(w_short(i) for i in pk_idx)
        for ks, tb, name, t in specs:
            out += w_string(ks) + w_string(tb) + w_string(name) + t.option()
        if st.kind == "select":
            table = self.server.owner.store.table(st.keyspace, st.table)
            cols = (
                [(table.keyspace, table.name, "count", BIGINT)]
                if st.count
                else [(table.keyspace, table.name, c, table.columns[c]) for c in st.columns]
            )
            out += Result.metadata(cols, None, False)
        else:
            out += w_int(0x0004) + w_int(0)
        return out

    def _batch(self, r: Reader) -> bytes:
        srv = self.server.owner
        r.byte()  # LOGGED / UNLOGGED / COUNTER: all applied statement by statement
        items: list[tuple[Statement, list[Any]]] = []
        for _ in range(r.short()):
            kind = r.byte()
            if kind == 0:
                st = Parser(r.long_string(), self.keyspace, srv.store).parse()
            else:
                qid = r.short_bytes()
                with srv.lock:
                    prep = srv.prepared.get(qid)
                if prep is None:
                    raise CqlError(ERR_UNPREPARED, "Prepared query not found", w_short_bytes(qid))
                st = prep.statement
            values = [r.value() for _ in range(r.short())]
            if st.kind not in ("insert", "update", "delete"):
                raise _invalid("Only INSERT, UPDATE and DELETE statements are allowed in a BATCH")
            items.append((st, values))
        srv.count("batch")
        with srv.store.lock:
            for st, values in items:
                srv.engine.execute(st, values, -1, None, True, self)
        return Result.void()


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: CqlTestServer


class CqlTestServer:
    """The protocol test server on ``host``:``port`` (0 = a free port), serving in daemon threads.

    ``start()`` binds and returns; ``stop()`` closes the listener and every open connection.
    ``store`` holds the data; ``inject_write_error`` adds faults; ``counters`` counts EXECUTE and
    BATCH requests (for tests that check how a sink sent its rows).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.store = Store()
        self.engine = Engine(self.store)
        self.prepared: dict[bytes, Prepared] = {}
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {"execute": 0, "batch": 0}
        self._tcp = _TcpServer((host, port), Connection, bind_and_activate=True)
        self._tcp.owner = self
        self.port = self._tcp.server_address[1]
        self._thread: threading.Thread | None = None
        self.store.init_local(host)

    def count(self, what: str) -> None:
        with self.lock:
            self.counters[what] += 1

    def start(self) -> CqlTestServer:
        self._thread = threading.Thread(target=self._tcp.serve_forever, name="cql-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def inject_write_error(
        self, keyspace: str, table: str, keys: Iterable[Any], kind: str = "invalid", times: int | None = None
    ) -> None:
        """Make writes of the partition ``keys`` (Python values of a one-column partition key) fail.

        ``kind``: ``"write_timeout"`` (WriteTimeout, write type SIMPLE), ``"overloaded"``, or
        ``"invalid"`` (InvalidRequest). ``times``: how many writes fail in total, over all ``keys``
        (``None``: every write, forever).
        """
        if kind not in ("write_timeout", "overloaded", "invalid"):
            raise ValueError(kind)
        t = self.store.table(keyspace, table)
        (pk,) = t.partition_key
        encoded = {encode_value(t.columns[pk], k) for k in keys}
        with self.store.lock:
            self.store.faults.append(Fault(keyspace, table, encoded, kind, times))

    def clear_faults(self) -> None:
        with self.store.lock:
            self.store.faults.clear()


def main() -> None:  # pragma: no cover - used by benchmarks/cassandra.py and by hand
    """``python cql_test_server.py [port]``: serve on 127.0.0.1 (port 0 = a free one) until killed.

    Prints ``listening <port>`` once it accepts connections.
    """
    import sys
    import time

    srv = CqlTestServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 9042).start()
    print(f"listening {srv.port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    main()
