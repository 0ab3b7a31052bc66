"""Strings of a Society that reach a command line, the file system or str.format, and what each
may hold: names and paths with no leading '-' (vLLM and the trainer would read `--model -x` as an
option) and no `..` segment (a path on the artifact volume is joined to its mount point and must
stay under it), and prompt templates whose placeholders the trainer fills without surprise.

Each constraint is a pattern in the CRD or a Rule (CEL for the apiserver, the same check in
Python), so `kubectl apply` and `society validate` refuse the same values.
"""

from __future__ import annotations

import re

from .base import Rule

# Names and paths that reach a command line or the file system. None may start with '-' (vLLM
# and the trainer would read `--model -x` as an option), and none may hold a `..` segment (a path
# on the artifact volume is joined to its mount point, and must stay under it).
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
# A Hugging Face repository id: owner/name, or a bare name; no segment starts with '.' or '-'.
HUB_ID_PATTERN = rf"{_SEGMENT}(/{_SEGMENT})?"
MODEL_NAME_PATTERN = rf"^(/.*|builtin:{_SEGMENT}|{HUB_ID_PATTERN})$"
# A dataset adds an optional :config (owner/name:config).
SOURCE_PATTERN = rf"^(/.*|{HUB_ID_PATTERN}(:{_SEGMENT})?)$"
# A git branch, tag or commit: no leading '-', and no '..' (git refuses it in a ref name too).
REVISION_PATTERN = r"^[A-Za-z0-9_]([A-Za-z0-9_/-]|[.][A-Za-z0-9_/-])*[.]?$"
_DOT_DOT = r"(^|/)[.][.](/|$)"
_NO_OPTION = "no segment starting with '-' or '.'"
# What `society validate` says instead of "should match pattern '...'" (validation.py).
PATTERN_WORDS = {
    MODEL_NAME_PATTERN: "must be a Hugging Face model id (owner/name), an absolute path on the "
    f"artifact volume (/models/x) or builtin:NAME; {_NO_OPTION}",
    SOURCE_PATTERN: "must be a Hugging Face dataset id (owner/name or owner/name:config) or an "
    f"absolute path on the artifact volume (/datasets/x.jsonl); {_NO_OPTION}",
    REVISION_PATTERN: "must be a git branch, tag or commit: letters, digits, '_', '-', '.' and "
    "'/', not starting with '-' or holding '..'",
}


def no_dot_dot(field: str, what: str) -> Rule:
    return Rule(
        cel=f"!has(self.{field}) || !self.{field}.matches('{_DOT_DOT}')",
        message=f"{what} may not hold a '..' segment: a path must stay on the artifact volume",
        check=lambda o, field=field: (
            getattr(o, field) is None or re.search(_DOT_DOT, getattr(o, field)) is None
        ),
        field=field,
    )


# Per template: the placeholders it must use and those it may use, as the trainer's
# society_trainer.tasks.base.PLACEHOLDERS says (a test keeps the two equal).
PROMPT_PLACEHOLDERS = {
    "generation": (("question",), ("question",)),
    "critic": (("others",), ("question", "own_answer", "others")),
    "summarizer": (("responses",), ("question", "responses")),
}


def _braced(names: tuple[str, ...]) -> str:
    return ", ".join("{" + name + "}" for name in names)


def _literal_or(placeholders: tuple[str, ...]) -> str:
    """One unit of a template (RE2 and Python alike): a character that is no brace, a doubled
    brace, or one of `placeholders` written as is: no attribute access ({a.b}), indexing
    ({a[0]}), conversion ({a!r}) or format spec ({a:>9}), which str.format would apply or trip on
    in the middle of a debate."""
    return f"([^{{}}]|[{{][{{]|[}}][}}]|[{{]({'|'.join(placeholders)})[}}])"


def prompt_rules(field: str) -> tuple[Rule, Rule]:
    required, allowed = PROMPT_PLACEHOLDERS[field]
    unit = _literal_or(allowed)
    grammar = f"^{unit}*$"
    # The placeholder as a field, not inside doubled braces ({{question}} is the text {question}).
    uses = f"^{unit}*[{{]{required[0]}[}}]"
    return (
        Rule(
            cel=f"!has(self.{field}) || self.{field}.matches('{grammar}')",
            message=f"the {field} prompt may use only {_braced(allowed)}, each written as is (no "
            "attribute access, indexing, conversion or format spec); write {{ and }} for a "
            "literal brace",
            check=lambda p, field=field, grammar=grammar: (
                getattr(p, field) is None or re.fullmatch(grammar, getattr(p, field)) is not None
            ),
            field=field,
        ),
        Rule(
            cel=f"!has(self.{field}) || self.{field}.matches('{uses}')",
            message=f"the {field} prompt must contain {{{required[0]}}}",
            check=lambda p, field=field, uses=uses: (
                getattr(p, field) is None or re.match(uses, getattr(p, field)) is not None
            ),
            field=field,
        ),
    )
