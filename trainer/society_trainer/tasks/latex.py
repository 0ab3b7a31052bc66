r"""Reading \boxed{} answers and reducing LaTeX answers to one spelling.

Competition answers nest braces (\boxed{\frac{\sqrt{3}}{2}}), so extraction counts braces instead
of using a regex. Normalisation removes what changes the typesetting but not the value: \dfrac,
\left/\right, thin spaces, units in \text{}, degree signs, dollar signs.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .numeric import canonical, to_decimal

_BOX_COMMANDS = ("\\boxed", "\\fbox")

_SPACING = re.compile(r"\\[!,;: ]|\\(?:quad|qquad|displaystyle)(?![a-zA-Z])")
_DELIMITER_SIZE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])")
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ)")
_TRAILING_UNIT = re.compile(r"(?<=\S)\s*\\(?:text|textrm|mbox|mathrm)\{[^{}]*\}(?:\^\{?\d\}?)?\s*$")
_TEXT = re.compile(r"\\(?:text|textrm|textbf|mbox|mathrm|mathbf)\{([^{}]*)\}")
_VARIABLE_PREFIX = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?=")
_ARGUMENT_COMMAND = re.compile(r"\\(frac|sqrt)(?![a-zA-Z])")
_COMMAND = re.compile(r"\\[a-zA-Z]+")


def closing_brace(text: str, start: int) -> int | None:
    r"""Index of the brace closing the one at `start`; escaped braces (\{ \}) are literals."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{} or \fbox{}; None when absent or cut off before it closes."""
    position, command = max((text.rfind(command), command) for command in _BOX_COMMANDS)
    if position < 0:
        return None
    start = position + len(command)
    if text.startswith("{", start):
        end = closing_brace(text, start)
        return None if end is None else text[start + 1 : end].strip()
    bare = re.match(r"\s+([^\s$]+)", text[start:])  # "\boxed 5" is valid TeX too
    return bare.group(1) if bare else None


def unwrap_text(text: str) -> str:
    return _TEXT.sub(r"\1", text)


def normalize(answer: str) -> str:
    """One spelling per answer, so that most equal answers compare equal as strings."""
    s = _SPACING.sub("", answer)
    s = _DELIMITER_SIZE.sub("", s)
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _TRAILING_UNIT.sub("", s)
    s = unwrap_text(s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = _brace_arguments(s)
    if s.count("=") == 1 and _VARIABLE_PREFIX.match(s):
        s = s.split("=", 1)[1]
    number = to_decimal(s)
    return s if number is None else canonical(number)


def latex_number(answer: str) -> str | None:
    r"""The number a LaTeX answer spells, canonical, or None if it spells no single number:
    "1\,000" and "1{,}000" (thousands separators), "-\$5", "+5", "{42}", "-{5}", "(5)",
    "\frac{3}{4}", "-\dfrac{10}{2}". A fraction is divided out ("0.75"), so it votes and
    grades with the decimal it equals."""
    s = normalize(answer.replace("~", ""))  # ~ is TeX's non-breaking space
    if _COMMAND.search(s) is None:  # braces and brackets only group here: "{-5}", "(5)"
        s = s.replace("{", "").replace("}", "")
        if s.startswith("(") and s.endswith(")"):
            s = s[1:-1]
    number = _signed(s)
    if number is None:
        number = _fraction(s)
    return None if number is None else canonical(number)


def _signed(s: str) -> Decimal | None:
    return to_decimal(s[1:] if s.startswith("+") else s)


def _fraction(s: str) -> Decimal | None:
    r"""A signed \frac of two numbers ("-\frac{3}{4}", "\frac{-3}{4}"), divided out."""
    sign = -1 if s.startswith("-") else 1
    s = s[1:] if s.startswith(("-", "+")) else s
    if not s.startswith("\\frac{"):
        return None
    end = closing_brace(s, 5)
    if end is None or not s.startswith("{", end + 1) or closing_brace(s, end + 1) != len(s) - 1:
        return None
    parts = (s[6:end], s[end + 2 : -1])
    numerator, denominator = (_signed(p.replace("{", "").replace("}", "")) for p in parts)
    if numerator is None or not denominator:
        return None
    return sign * numerator / denominator


def _brace_arguments(s: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2}: valid shorthands that would compare unequal."""
    out, pos = [], 0
    while match := _ARGUMENT_COMMAND.search(s, pos):
        out.append(s[pos : match.end()])
        pos = match.end()
        if match.group(1) == "sqrt" and s.startswith("[", pos):
            end = s.find("]", pos)
            if end < 0:
                break
            out.append(s[pos : end + 1])
            pos = end + 1
        for _ in range(2 if match.group(1) == "frac" else 1):
            argument = _argument(s, pos)
            if argument is None:
                break
            text, pos = argument
            out.append("{" + text + "}")
    out.append(s[pos:])
    return "".join(out)


def _argument(s: str, pos: int) -> tuple[str, int] | None:
    if pos >= len(s):
        return None
    if s[pos] == "{":
        end = closing_brace(s, pos)
        return None if end is None else (_brace_arguments(s[pos + 1 : end]), end + 1)
    command = _COMMAND.match(s, pos)
    if command:
        return command.group(0), command.end()
    return s[pos], pos + 1
