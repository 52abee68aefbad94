"""A small, safe expression language compiled to ``pyarrow.compute.Expression`` (never Python ``eval``).

Used by YAML pipelines for ``filter:`` and ``with_columns:``. Grammar (lowest precedence first)::

    expr     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | compare
    compare  := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
    sum      := product (("+" | "-") product)*
    product  := unary (("*" | "/" | "%") unary)*
    unary    := "-" unary | atom
    atom     := NUMBER | STRING | "true" | "false" | "null" | NAME | `quoted name`
              | FUNC "(" expr ("," expr)* ")" | "(" expr ")"

* A ``NAME`` (letters, digits, ``_``; not a keyword) or a back-quoted name refers to a column.
* Strings are single- or double-quoted with backslash escapes for the quote and the backslash.
* ``and``/``or``/``not`` use Kleene logic (SQL: ``null and false`` is false); a filter drops rows
  whose predicate is null.
* Arithmetic uses Arrow's checked kernels: overflow raises instead of wrapping. ``/`` of two integers
  is Arrow's integer division (truncated); ``%`` is the floored remainder (the sign of the divisor,
  as in Python).
* Functions: ``is_null(x)``, ``is_valid(x)``, ``abs(x)``, ``lower(x)``, ``upper(x)``, ``length(x)``
  (characters of a string), ``starts_with(x, 'prefix')``, ``ends_with(x, 'suffix')``,
  ``contains(x, 'substring')``.

Errors are :class:`~arrowflow.errors.ConfigurationError` naming the offending token and its column
(1-based) in the expression text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow.compute as pc

from ..errors import ConfigurationError

__all__ = ["FUNCTIONS", "parse_expression"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%|\(|\)|,)
    """,
    re.VERBOSE,
)

_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_COMPARE = {
    "==": "equal",
    "!=": "not_equal",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
}
_ARITH = {
    "+": "add_checked",
    "-": "subtract_checked",
    "*": "multiply_checked",
    "/": "divide_checked",
    "%": "modulo_checked",
}


def _call(name: str, *args: pc.Expression, options: object = None) -> pc.Expression:
    return pc.Expression._call(name, list(args), options)  # type: ignore[attr-defined, no-any-return]


def _string_arg(fn: str, args: list[_Value]) -> tuple[pc.Expression, str]:
    if len(args) != 2 or not isinstance(args[1].literal, str):
        raise ValueError(f"{fn}(column, 'text') takes a column and a string literal")
    return args[0].expr, args[1].literal


def _match(kernel: str, fn: str) -> Callable[[list[_Value]], pc.Expression]:
    def build(args: list[_Value]) -> pc.Expression:
        expr, text = _string_arg(fn, args)
        return _call(kernel, expr, options=pc.MatchSubstringOptions(text))

    return build


def _unary(kernel: str, fn: str) -> Callable[[list[_Value]], pc.Expression]:
    def build(args: list[_Value]) -> pc.Expression:
        if len(args) != 1:
            raise ValueError(f"{fn}() takes exactly one argument, got {len(args)}")
        return _call(kernel, args[0].expr)

    return build


#: Function name -> builder from the parsed arguments.
FUNCTIONS: dict[str, Callable[[list[_Value]], pc.Expression]] = {
    "is_null": _unary("is_null", "is_null"),
    "is_valid": _unary("is_valid", "is_valid"),
    "abs": _unary("abs_checked", "abs"),
    "lower": _unary("utf8_lower", "lower"),
    "upper": _unary("utf8_upper", "upper"),
    "length": _unary("utf8_length", "length"),
    "starts_with": _match("starts_with", "starts_with"),
    "ends_with": _match("ends_with", "ends_with"),
    "contains": _match("match_substring", "contains"),
}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    col: int


@dataclass(frozen=True)
class _Value:
    """A parsed operand: the expression, and the Python literal when it is a string literal."""

    expr: pc.Expression
    literal: object = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigurationError(
                f"expression {text!r}: unexpected character {text[pos]!r} at column {pos + 1}",
                option="expression",
            )
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, message: str, tok: _Token | None = None) -> ConfigurationError:
        tok = tok or self.peek()
        where = "end of expression" if tok.kind == "end" else f"{tok.text!r} at column {tok.col}"
        return ConfigurationError(f"expression {self.text!r}: {message} ({where})", option="expression")

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, *texts: str) -> _Token | None:
        tok = self.peek()
        if tok.kind in ("op", "name") and tok.text in texts:
            self.i += 1
            return tok
        return None

    def expect(self, text: str) -> None:
        if self.accept(text) is None:
            raise self.error(f"expected {text!r}")

    def parse(self) -> pc.Expression:
        if self.peek().kind == "end":
            raise self.error("empty expression")
        value = self.or_()
        if self.peek().kind != "end":
            raise self.error("unexpected token")
        return value.expr

    def or_(self) -> _Value:
        left = self.and_()
        while self.accept("or"):
            left = _Value(_call("or_kleene", left.expr, self.and_().expr))
        return left

    def and_(self) -> _Value:
        left = self.not_()
        while self.accept("and"):
            left = _Value(_call("and_kleene", left.expr, self.not_().expr))
        return left

    def not_(self) -> _Value:
        if self.accept("not"):
            return _Value(_call("invert", self.not_().expr))
        return self.compare()

    def compare(self) -> _Value:
        left = self.sum()
        tok = self.accept(*_COMPARE)
        if tok is None:
            return left
        right = self.sum()
        if self.peek().text in _COMPARE:
            raise self.error("comparisons cannot be chained; combine them with 'and'")
        return _Value(_call(_COMPARE[tok.text], left.expr, right.expr))

    def sum(self) -> _Value:
        left = self.product()
        while (tok := self.accept("+", "-")) is not None:
            left = _Value(_call(_ARITH[tok.text], left.expr, self.product().expr))
        return left

    def product(self) -> _Value:
        left = self.unary()
        while (tok := self.accept("*", "/", "%")) is not None:
            left = _Value(_call(_ARITH[tok.text], left.expr, self.unary().expr))
        return left

    def unary(self) -> _Value:
        if self.accept("-"):
            return _Value(_call("negate_checked", self.unary().expr))
        return self.atom()

    def atom(self) -> _Value:
        tok = self.next()
        if tok.kind == "number":
            text = tok.text
            is_float = any(c in text for c in ".eE")
            return _Value(pc.scalar(float(text) if is_float else int(text)))
        if tok.kind == "string":
            literal = _unescape(tok.text[1:-1])
            return _Value(pc.scalar(literal), literal)
        if tok.kind == "quoted":
            return _Value(pc.field(tok.text[1:-1]))
        if tok.kind == "name":
            word = tok.text
            if word == "true":
                return _Value(pc.scalar(True))
            if word == "false":
                return _Value(pc.scalar(False))
            if word == "null":
                return _Value(pc.scalar(None))
            if word in _KEYWORDS:
                raise self.error(f"{word!r} needs an operand before it", tok)
            if self.peek().text == "(":
                return self.function(tok)
            return _Value(pc.field(word))
        if tok.kind == "op" and tok.text == "(":
            inner = self.or_()
            self.expect(")")
            return inner
        raise self.error("expected a column, a literal or '('", tok)

    def function(self, tok: _Token) -> _Value:
        builder = FUNCTIONS.get(tok.text)
        if builder is None:
            raise self.error(f"unknown function; allowed: {', '.join(sorted(FUNCTIONS))}", tok)
        self.expect("(")
        args = [self.or_()]
        while self.accept(","):
            args.append(self.or_())
        self.expect(")")
        try:
            return _Value(builder(args))
        except ValueError as exc:
            raise self.error(str(exc), tok) from None


def parse_expression(text: str) -> pc.Expression:
    """Compile ``text`` (see the module docstring) into a ``pyarrow.compute.Expression``.

    Raises :class:`ConfigurationError` (option ``"expression"``) for a syntax error, an unknown
    function or a wrong argument; type errors (comparing a string with a number) surface when the
    expression is evaluated against the first batch.
    """
    if not isinstance(text, str):
        raise ConfigurationError(
            f"an expression must be a string, got {type(text).__name__}", option="expression"
        )
    return _Parser(text).parse()
