"""Helpers shared by the benchmark tasks: split checking, a base class for tasks read from one
data file, final-answer extraction from worked solutions, and deliberately wrong answers.

Nothing here imports a verifier implementation, so loading a task never pulls in sympy.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from brite_envs.data import DataSource, Record, describe_source, load_records
from brite_envs.errors import EnvConfigError, MalformedRecordError
from brite_envs.task import PromptTemplate, Task
from verifiers import Verifier


def check_split(task: str, split: str, valid: Sequence[str]) -> str:
    """``split`` if the task has it; otherwise an error that names the valid splits."""
    if split not in valid:
        raise EnvConfigError(
            f"task {task!r} has no split {split!r}; valid splits are: {', '.join(valid)}"
        )
    return split


class DatasetTask(Task):
    """A task whose problems are the records of one benchmark split (a local file or a hub
    dataset). Handles the ``split``/``path`` arguments and :meth:`data_location`; subclasses
    give the :class:`DataSource` and turn records into problems."""

    splits: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(
        self,
        *,
        split: str = "test",
        path: str | os.PathLike[str] | None = None,
        template: PromptTemplate | None = None,
        verifier_config: Mapping[str, Any] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        super().__init__(template=template, verifier_config=verifier_config, verifier=verifier)
        self.split = check_split(self.name, split, self.splits)
        self.path = path
        self.source = self.data_source(split)

    @abc.abstractmethod
    def data_source(self, split: str) -> DataSource:
        """Where ``split`` lives locally (under ``$BRITE_DATA_DIR``) and on the hub."""

    def data_location(self) -> str:
        return describe_source(self.source, self.path)

    def records(self) -> list[Record]:
        """The raw records, local first (``path``, then ``$BRITE_DATA_DIR``), then the hub."""
        return load_records(self.source, self.path)


# -- reading fields -------------------------------------------------------------------------


def text_field(record: Record, names: Sequence[str]) -> str:
    """The first of ``names`` that the record has (hub mirrors name the question ``problem``
    or ``question``); a missing field is reported under the first, preferred name."""
    for name in names[1:]:
        if record.data.get(names[0]) is None and record.data.get(name) is not None:
            return record.str_field(name)
    return record.str_field(names[0])


_INT_RE = re.compile(r"[+-]?\d+")
_INTEGRAL_FLOAT_RE = re.compile(r"([+-]?\d+)\.0*")


def canonical_number(text: str) -> str:
    """Integers in their plain form: ``"27.0"`` -> ``"27"`` (AMC answers are floats) and
    ``"025"`` -> ``"25"`` (some AIME answers are zero-padded). Anything else is returned
    stripped but otherwise unchanged."""
    text = text.strip()
    m = _INT_RE.fullmatch(text) or _INTEGRAL_FLOAT_RE.fullmatch(text)
    return str(int(m.group(m.lastindex or 0))) if m else text


# -- \boxed{} extraction --------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX_ARG_RE = re.compile(r"[^\s$]+")


def _braced(text: str, start: int) -> str | None:
    """The contents of the brace group opening at ``text[start]``, or None if unbalanced.
    Escaped braces (``\\{``) are literal characters and do not nest."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """The final answer of a worked solution: the contents of its last ``\\boxed{...}`` or
    ``\\fbox{...}`` (balanced braces; also the brace-less ``\\boxed 2`` form), stripped.

    None when there is no box or the last one is unbalanced: falling back to an earlier box
    would silently grade against an intermediate result.
    """
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    j = matches[-1].end()
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        inner = _braced(text, j)
        return inner.strip() if inner is not None else None
    bare = _BARE_BOX_ARG_RE.match(text, j)
    return bare.group(0) if bare else None


def boxed_reference(record: Record, field: str, fixes: Mapping[str, str] | None = None) -> str:
    """The last boxed answer of ``record[field]``; a record without one is malformed.

    ``fixes`` maps a record id (``unique_id``) to its answer, for the few official records
    whose solution boxes nothing; it only applies when the box is missing or empty.
    """
    solution = record.str_field(field)
    answer = last_boxed(solution)
    if answer:
        return answer
    uid = record.data.get("unique_id")
    if fixes and isinstance(uid, str) and uid in fixes:
        return fixes[uid]
    what = "has an empty \\boxed{}" if answer == "" else "has no balanced \\boxed{...} answer"
    raise MalformedRecordError(record.file, record.line, field, what)


# -- wrong answers --------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE])([+-]?\d+))?")

# LaTeX commands that keep an expression a single finite value (so "E+1" differs from E).
_SAFE_COMMANDS = frozenset(
    (
        *("frac", "dfrac", "tfrac", "sqrt", "pi", "cdot", "times", "left", "right"),
        *("ln", "log", "sin", "cos", "tan", "exp"),
        *("alpha", "beta", "gamma", "theta", "lambda", "mu", "omega", "tau", "phi", "sigma"),
    )
)
_SAFE_CHARS_RE = re.compile(r"[0-9A-Za-z+\-*/^(){}. ]*")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|.)")
_SENTINELS = ("\\text{none}", "\\text{no answer}", "\\text{undefined}")


def _bump_number(sign: str, digits: str, exp_mark: str | None, exponent: str | None) -> str:
    """Add one unit of the leading digit (27 -> 37, 1.6 -> 2.6, 4.5e33 -> 5.5e33): at least
    ~10% away, so no relative tolerance can call it equal, and formatted like the input."""
    value = Decimal(sign + digits)
    step = Decimal(1).scaleb(value.adjusted()) if value != 0 else Decimal(1)
    bumped = value + step
    places = len(digits.partition(".")[2])
    out = f"{bumped:.{places}f}" if "." in digits else str(int(bumped))
    return out + (f"{exp_mark}{exponent}" if exp_mark else "")


_FRAC_RE = re.compile(r"\\[dt]?frac(?![A-Za-z])")
_SQRT_RE = re.compile(r"\\sqrt(?![A-Za-z])")
_STRAY_DOT_RE = re.compile(r"\.(?!\d)")


def _well_formed_fracs(reference: str) -> bool:
    """Every ``\\frac`` has two braced arguments and every ``\\sqrt`` a braced or one-digit
    one: brace-less forms such as ``\\frac \\pi4`` are misread by LaTeX parsers, and a
    misread reference could read the same with ``+1`` appended."""
    for m in _FRAC_RE.finditer(reference):
        j = m.end()
        for _ in range(2):
            while j < len(reference) and reference[j] == " ":
                j += 1
            if j >= len(reference) or reference[j] != "{":
                return False
            inner = _braced(reference, j)
            if inner is None:
                return False
            j += len(inner) + 2
    for m in _SQRT_RE.finditer(reference):
        nxt = reference[m.end() : m.end() + 1]
        if not (nxt == "{" or nxt.isdigit()):
            return False
    return True


def _is_simple_expression(reference: str) -> bool:
    """True for a single finite, well-formed algebraic expression (numbers, fractions, roots,
    variables): adding 1 to it is a valid, different expression. Sets, tuples, intervals,
    equations, infinity, text, units, degrees and stray punctuation are not."""
    if any(ch in reference for ch in ",=<>[]|_!%$&;") or _STRAY_DOT_RE.search(reference):
        return False
    commands = _COMMAND_RE.findall(reference)
    if any(c not in _SAFE_COMMANDS for c in commands):
        return False
    if _SAFE_CHARS_RE.fullmatch(_COMMAND_RE.sub(" ", reference)) is None:
        return False
    return _well_formed_fracs(reference)


def wrong_answer(reference: str) -> str:
    """An answer that is definitely not equivalent to ``reference``.

    Plain numbers move by one unit of their leading digit (keeping integer/decimal/scientific
    form); simple expressions get ``+1``; anything else (sets, intervals, equations, text)
    becomes a text answer that the reference does not contain.
    """
    ref = reference.strip()
    m = _NUMBER_RE.fullmatch(ref)
    if m:
        try:
            return _bump_number(*m.groups())
        except InvalidOperation:  # pragma: no cover - the regex only admits valid numbers
            pass
    if ref and _is_simple_expression(ref):
        return f"{ref}+1"
    lowered = ref.lower()
    for sentinel in _SENTINELS:
        word = sentinel[len("\\text{") : -1]
        if word not in lowered:
            return sentinel
    return "\\text{none}" + ref  # every sentinel occurs in the reference: unreachable in practice
