r"""Whether two normalised LaTeX answers have the same value ("0.5" vs "\frac{1}{2}").

Model output is untrusted, so it is never handed to an eval-based parser (sympy's parse_expr) or
to the antlr-based LaTeX parser (an optional dependency): a small recursive-descent parser reads
the subset of LaTeX that final answers use and builds sympy objects directly. Inputs that could
make sympy run for long (long strings, huge powers) are refused, and a refusal means "not shown
equal", never an error. No timeout is needed: every step is bounded by the input's length.
"""

from __future__ import annotations

import random
import re

import sympy

MAX_CHARS = 200
_POINTS = 3
_DIGITS = 50
_TOLERANCE = sympy.Float("1e-25")
_MAX_DIGITS = 30
_MAX_EXPONENT = 100
_MAX_RATIONAL = sympy.Integer(10) ** 1000

_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|\\[a-zA-Z]+|[a-zA-Z]|[-+*/^(){}\[\]])")
_CLOSING = {"(": ")", "{": "}", "[": "]"}
_MULTIPLY = {"*", "\\cdot", "\\times"}
_DIVIDE = {"/", "\\div"}
_CONSTANTS = {"\\pi": sympy.pi}


def equivalent(a: str, b: str) -> bool:
    """Equal values, or for expressions with variables equal values at a few fixed points.

    Evaluating at points, rather than expanding or simplifying symbolically, keeps the cost linear
    in the size of the input: expanding "(a+b)^{16}(c+d)^{16}..." would not finish.
    """
    if max(len(a), len(b)) > MAX_CHARS:
        return False
    try:
        x, y = to_sympy(a), to_sympy(b)
        if x == y:
            return True
        symbols = sorted(x.free_symbols | y.free_symbols, key=str)
        points = random.Random(0)  # fixed: grading must not depend on the run
        for _ in range(_POINTS if symbols else 1):
            # positive values keep sqrt and fractional powers of variables real
            point = {symbol: sympy.Float(points.uniform(0.5, 2.5), _DIGITS) for symbol in symbols}
            u, v = x.evalf(_DIGITS, subs=point), y.evalf(_DIGITS, subs=point)
            if not abs(u - v) <= _TOLERANCE * max(1, abs(u), abs(v)):
                return False
        return True
    except Exception:  # sympy raises many unrelated types; any failure means "not shown equal"
        return False


def to_sympy(text: str) -> sympy.Expr:
    """Parse a normalised answer (braced \\frac and \\sqrt arguments, no spaces needed)."""
    if len(text) > MAX_CHARS:
        raise ValueError("too long to compare symbolically")
    parser = _Parser(_tokenize(text))
    value = parser.expression()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r}")
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ValueError("not a finite value")
    return value


def _tokenize(text: str) -> list[str]:
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unexpected {text[pos]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if exponent.is_number and abs(exponent) > _MAX_EXPONENT:
        raise ValueError("exponent too large")
    if base.is_Rational and max(abs(base.p), base.q) > _MAX_RATIONAL:
        raise ValueError("base too large")
    return base**exponent


class _Parser:
    """expression := ['+'|'-'] term (('+'|'-') term)*; a term multiplies factors, explicitly
    (*, \\cdot, \\times, /, \\div) or by juxtaposition (2\\sqrt{2}, 3x, (a)(b))."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected or 'more'}, found {token!r}")
        self.pos += 1
        return token

    def expression(self) -> sympy.Expr:
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            operand = self.term()
            value = value + operand if operator == "+" else value - operand
        return value

    def term(self) -> sympy.Expr:
        value = self.signed()
        while (token := self.peek()) is not None:
            if token in _MULTIPLY:
                self.take()
                value = value * self.signed()
            elif token in _DIVIDE:
                self.take()
                value = value / self.signed()
            elif _starts_atom(token):
                value = value * self.power()
            else:
                break
        return value

    def signed(self) -> sympy.Expr:
        if self.peek() in ("+", "-"):
            return -self.signed() if self.take() == "-" else self.signed()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        if self.peek() == "-":
            self.take()
            return _power(base, -self.atom())
        return _power(base, self.atom())

    def atom(self) -> sympy.Expr:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            if len(token) > _MAX_DIGITS:
                raise ValueError("number too long")
            return sympy.Rational(token)
        if len(token) == 1 and token.isalpha():
            return sympy.Symbol(token)
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        if token in _CLOSING:
            inner = self.expression()
            self.take(_CLOSING[token])
            return inner
        if token == "\\frac":
            return self.group() / self.group()
        if token == "\\sqrt":
            if self.peek() == "[":
                self.take()
                index = self.expression()
                self.take("]")
                return _power(self.group(), 1 / index)
            return sympy.sqrt(self.group())
        raise ValueError(f"unsupported {token!r}")

    def group(self) -> sympy.Expr:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value


def _starts_atom(token: str) -> bool:
    return (
        token[0].isalnum()
        or token[0] == "."
        or token in _CLOSING
        or token in _CONSTANTS
        or token in ("\\frac", "\\sqrt")
    )
