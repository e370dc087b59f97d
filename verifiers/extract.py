"""Answer extraction: pure, regex/scan based functions shared by every verifier.

Everything here runs in the calling process, so each function is linear in the input length
(no nested quantifiers that could backtrack catastrophically on a 50,000-character answer).
Every extractor returns an :class:`Extraction` naming the rule that matched, so a verdict can
say *why* it read the answer it graded.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Extraction",
    "extract_choice",
    "extract_gsm8k",
    "extract_math",
    "find_boxed",
    "is_echo",
    "is_hedge",
    "last_boxed",
    "normalize_exact",
    "normalize_latex",
    "parse_choice_reference",
    "parse_number",
    "restated_spans",
    "strip_restated",
    "strip_think",
]


@dataclass(frozen=True)
class Extraction:
    """The answer read from a completion.

    ``answer`` is what gets graded; ``rule`` names the rule that found it ("boxed",
    "answer-is", "hash", "last-number", ...); ``candidates`` holds every distinct answer the
    rule saw (several distinct boxed answers are a hedge, graded as wrong).
    """

    answer: str
    rule: str
    candidates: tuple[str, ...] = field(default=())

    @property
    def hedged(self) -> bool:
        return len(self.candidates) > 1


# --------------------------------------------------------------------------- generic helpers

_THINK_OPEN = re.compile(r"^\s*<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def strip_think(text: str) -> str:
    """Drop a leading ``<think>...</think>`` block, or everything before a lone ``</think>``
    (chat templates that open the block in the prompt produce that). Without a closing tag the
    text is returned unchanged: the answer may be all there is."""
    if _THINK_OPEN.match(text):
        m = _THINK_CLOSE.search(text)
        return text[m.end() :] if m else text
    if "<think>" in text.lower():
        return text
    last = None
    for last in _THINK_CLOSE.finditer(text):  # noqa: B007 - we want the last match
        pass
    return text[last.end() :] if last else text


_BOXED = re.compile(r"\\(?:boxed|fbox)\b\s*")


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each ``{`` mapped to its matching ``}`` (escaped ``\\{``/``\\}`` skipped), in
    one linear pass; unmatched braces are left out."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def find_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``/``\\fbox{...}`` in order, braces balanced (nested
    boxes are not reported separately). A single-token form (``\\boxed 5``) is accepted too;
    an unclosed box is skipped. Linear time, whatever the nesting."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    pairs: dict[int, int] | None = None
    out: list[str] = []
    pos = 0
    while True:
        m = _BOXED.search(text, pos)
        if not m:
            return out
        i = m.end()
        if i < len(text) and text[i] == "{":
            if pairs is None:
                pairs = _brace_pairs(text)
            j = pairs.get(i)
            if j is None:  # unbalanced: no answer in this box
                pos = i + 1
                continue
            out.append(text[i + 1 : j].strip())
            pos = j + 1
        else:
            tok = re.match(r"[^\s$.,;]+", text[i : i + 200])
            if tok and m.group(0)[-1:].isspace():  # "\\boxed 5"
                out.append(tok.group(0))
            pos = max(i, m.start() + 1)


def last_boxed(text: str) -> str | None:
    """The last boxed answer, or None."""
    boxes = find_boxed(text)
    return boxes[-1] if boxes else None


_WS = re.compile(r"\s+")


def _distinct(items: list[str]) -> tuple[str, ...]:
    """Distinct items (by whitespace-free LaTeX normal form), keeping the first spelling."""
    seen: dict[str, str] = {}
    for it in items:
        seen.setdefault(normalize_latex(it), it)
    return tuple(seen.values())


# "final answer is", "the answer is", "answer:"; the *last* such phrase wins.
_ANSWER_IS = re.compile(
    r"(?:final\s+answer\s*(?:is|:|=)|the\s+answer\s+is|\banswer\s*(?::|is\b))\s*(?::\s*)?",
    re.IGNORECASE,
)
_LINE_END = re.compile(r"\n")


def _answer_is_raw(text: str) -> str | None:
    """Text after the last answer phrase, up to the end of its line (or the next line, for
    "Answer:\\n 42"), uncleaned; None when there is no phrase."""
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end() :]
    end = _LINE_END.search(rest)
    span = rest[: end.start()] if end else rest
    span = span.strip()
    if not span and end:  # "Answer:\n 42"
        nxt = rest[end.end() :].lstrip("\n")
        stop = _LINE_END.search(nxt)
        span = (nxt[: stop.start()] if stop else nxt).strip()
    return span


def _answer_is_span(text: str) -> str | None:
    """Text after the last answer phrase, up to the end of its line, cleaned; ``""`` when
    the phrase is followed by nothing (an empty answer), None when there is no phrase."""
    span = _answer_is_raw(text)
    return None if span is None else _clean_span(span)


_MATH_DELIMS = re.compile(r"^\$+|\$+$|^\\\(|\\\)$|^\\\[|\\\]$")


def _clean_span(span: str) -> str:
    """Strip markdown bold, surrounding math delimiters and a sentence-final period."""
    span = span.strip().strip("*").strip()
    # keep the first math segment if the span is "$x$ because ..." style
    m = re.match(r"^\$\$?([^$]+)\$\$?", span) or re.match(r"^\\\((.+?)\\\)", span)
    if m:
        span = m.group(1)
    else:
        # cut at a sentence end: ". " followed by more text
        cut = re.search(r"\.\s+[A-Z]", span)
        if cut:
            span = span[: cut.start()]
    span = span.strip()
    for _ in range(3):
        span = _MATH_DELIMS.sub("", span).strip()
        span = span.rstrip(".").strip()
        span = span.strip("*").strip()
    return span


_HEDGE = re.compile(r"(?<![A-Za-z\\])(?:or|and/or)(?![A-Za-z])|\\(?:lor|vee)\b")


def is_hedge(answer: str, reference: str = "") -> bool:
    """True when ``answer`` offers alternatives ("3 or 4") that the reference does not."""
    return bool(_HEDGE.search(answer)) and not _HEDGE.search(reference)


# --------------------------------------------------------------------------- the question

RESTATE_MIN_WORDS = 5
"""A verbatim restatement is a run of at least this many consecutive words of the question
(or the whole question, when it is shorter): short phrases such as "2x = 10" are working,
not a restatement."""
ECHO_FRACTION = 0.9
"""A completion at least this much restated question (by non-space characters) is an echo."""

_WORD = re.compile(r"\S+")


@functools.lru_cache(maxsize=512)
def _question_grams(question: str) -> tuple[int, frozenset[tuple[str, ...]]]:
    """(n, every run of n consecutive question words): n is RESTATE_MIN_WORDS, or the
    question's own word count when it is shorter. Cached: a task grades many completions
    of one question."""
    words = tuple(question.split())
    n = min(RESTATE_MIN_WORDS, len(words))
    if n == 0:
        return 0, frozenset()
    return n, frozenset(words[i : i + n] for i in range(len(words) - n + 1))


def restated_spans(text: str, question: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``text`` that restate ``question`` verbatim
    (whitespace-insensitive, word-aligned): maximal runs of words covered by runs of
    :data:`RESTATE_MIN_WORDS` consecutive question words. Linear in ``len(text)``."""
    n, grams = _question_grams(question)
    if not n or not text:
        return []
    matches = list(_WORD.finditer(text))
    words = [m.group(0) for m in matches]
    first = {g[0] for g in grams}
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        if words[i] in first and tuple(words[i : i + n]) in grams:
            for j in range(i, i + n):
                covered[j] = True
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if not covered[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and covered[j + 1]:
            j += 1
        spans.append((matches[i].start(), matches[j].end()))
        i = j + 1
    return spans


def _nonspace(s: str) -> int:
    return len(s) - sum(map(str.isspace, s))


def is_echo(text: str, question: str) -> bool:
    """True when ``text`` is (nearly) just ``question`` restated: at least
    :data:`ECHO_FRACTION` of its non-space characters lie in verbatim restatements."""
    total = _nonspace(text)
    if not total or not question.strip():
        return False
    covered = sum(_nonspace(text[a:b]) for a, b in restated_spans(text, question))
    return covered >= ECHO_FRACTION * total


def _box_regions(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of every balanced ``\\boxed{...}``/``\\fbox{...}``."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    pairs = _brace_pairs(text)
    out = []
    for m in _BOXED.finditer(text):
        j = pairs.get(m.end()) if m.end() < len(text) and text[m.end()] == "{" else None
        if j is not None:
            out.append((m.start(), j + 1))
    return out


def strip_restated(text: str, question: str | None) -> str:
    """``text`` without its verbatim restatements of ``question``, so an answer read from it
    cannot come from the question. A restatement only partly overlapping a ``\\boxed{}``
    leaves the box whole (a boxed answer may quote the question's wording), and one ending
    in an answer phrase ("so the answer is") leaves that phrase. Each removed span becomes a
    line break if it held one, else a space, keeping line-based rules working."""
    if not question:
        return text
    spans = restated_spans(text, question)
    if not spans:
        return text
    boxes = _box_regions(text)
    out: list[str] = []
    pos = 0
    for a, b in spans:
        # a restatement ending in "the answer is" leaves the phrase: its answer follows,
        # outside the question, and is the completion's own
        tail = None
        for tail in _ANSWER_IS.finditer(text, a, b):  # noqa: B007 - we want the last match
            pass
        if tail is not None and not text[tail.end() : b].strip(" :*$"):
            b = tail.start()
        for ba, bb in boxes:  # keep any box this span cuts into without containing it
            if ba < b and a < bb and not (a <= ba and bb <= b):
                if ba <= a:
                    a = min(b, bb)
                else:
                    b = ba
        if a >= b or a < pos:
            continue
        out.append(text[pos:a])
        out.append("\n" if "\n" in text[a:b] else " ")
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _answer_body(text: str, question: str | None) -> str:
    """What extraction reads: no thinking block, no restated question."""
    body = strip_think(text)
    return strip_restated(body, question) if question else body


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"(?<![\w.])[-−]?\s?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?![\d.]))?"
    r"|[-−]?\.\d+"
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")


def _number_text(text: str) -> str:
    """Undo LaTeX spellings of numbers: ``{,}``, thin spaces, ``\\$``, ``\\frac{a}{b}``."""
    t = text.replace("{,}", ",").replace("\\,", "").replace("\\!", "").replace("\\$", "$")
    t = t.replace("\\%", "%").replace("−", "-")
    return _FRAC.sub(r"\1/\2", t) if "frac" in t else t


def parse_number(text: str) -> str | None:
    """The first number in ``text`` in canonical form ("-1234.5", "3/4"), ignoring ``$``,
    thousands commas, LaTeX thin spaces and trailing units. None when there is no number."""
    m = _NUMBER.search(_number_text(text))
    return _canon_number(m.group(0)) if m else None


def _canon_number(tok: str) -> str:
    s = tok.replace("$", "").replace(",", "").replace(" ", "").replace("−", "-")
    den = ""
    if "/" in s:
        s, den = s.split("/", 1)
        den = "/" + (den.lstrip("0") or "0")
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "." in s:
        whole, frac = s.split(".", 1)
        frac = frac.rstrip("0")
        s = (whole or "0") + ("." + frac if frac else "")
    s = s.lstrip("0") or "0"
    if s.startswith("."):
        s = "0" + s
    return ("-" if neg and s != "0" else "") + s + den


def _last_number(text: str) -> str | None:
    t = _number_text(text)
    last = None
    for m in _NUMBER.finditer(t):
        last = m
    return _canon_number(last.group(0)) if last else None


# --------------------------------------------------------------------------- math


def extract_math(
    text: str, *, strict: bool = False, question: str | None = None
) -> Extraction | None:
    """Read a math answer: the last ``\\boxed{}``/``\\fbox{}``; else "final answer is",
    "The answer is", "Answer:"; in flexible mode, else the last number. Verbatim
    restatements of ``question`` are skipped (an answer found only there is no answer)."""
    body = _answer_body(text, question)
    boxes = find_boxed(body)
    if boxes:
        boxes = [b for b in boxes if b] or boxes
        return Extraction(boxes[-1], "boxed", _distinct(boxes))
    span = _answer_is_span(body)
    if span is not None:  # "" too: "The answer is" and nothing after it is an empty answer
        inner = find_boxed(span)
        return Extraction(inner[-1] if inner else span, "answer-is", ())
    if not strict:
        num = _last_number(body)
        if num is not None:
            return Extraction(num, "last-number", ())
    return None


_LATEX_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |~|\\displaystyle")


def normalize_latex(s: str) -> str:
    """A light, purely textual normal form of a LaTeX answer for string comparison."""
    s = _LATEX_DROP.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = s.replace("−", "-")
    s = _WS.sub("", s)
    s = s.rstrip(".")
    if s.startswith("$") and s.endswith("$"):
        s = s.strip("$")
    return s


# --------------------------------------------------------------------------- gsm8k

_HASH = re.compile(r"####\s*([^\n]*)")
_NUM_HEDGE = re.compile(r"\d\s*,?\s*(?:or|and/or)\s+[-$−]?\s?\d", re.IGNORECASE)


def extract_gsm8k(
    text: str, *, strict: bool = False, question: str | None = None
) -> Extraction | None:
    """Read a GSM8K number: ``#### N``; else ``\\boxed{N}``; else "The answer is N"; in
    flexible mode, else the last number. A span offering two numbers ("3 or 4") comes back
    with both as candidates, i.e. hedged. Verbatim restatements of ``question`` are
    skipped."""
    body = _answer_body(text, question)
    hashes = list(_HASH.finditer(body))
    if hashes:
        return _number_extraction(hashes[-1].group(1), "hash")
    all_boxes = find_boxed(body)
    boxes = [b for b in all_boxes if b]
    if all_boxes and not boxes:  # only "\\boxed{}": an empty answer, not a reason to guess
        return Extraction("", "boxed", ())
    if boxes:
        nums = [parse_number(b) for b in boxes]
        ext = _number_extraction(boxes[-1], "boxed")
        distinct = tuple(dict.fromkeys(nums))
        if ext is not None and len(distinct) > 1:
            return Extraction(ext.answer, "boxed", tuple(str(n) for n in distinct))
        return ext
    span = _answer_is_span(body)
    if span == "":
        return Extraction("", "answer-is", ())
    if span and parse_number(span) is not None:
        return _number_extraction(span, "answer-is")
    if not strict:
        num = _last_number(body)
        if num is not None:
            return Extraction(num, "last-number", ())
    return None


def _number_extraction(span: str, rule: str) -> Extraction:
    """The number in an explicit answer span; a span without one is still the answer given
    (graded wrong, not unparsable), kept verbatim."""
    num = parse_number(span)
    if num is None:
        return Extraction(span.strip(), rule, ())
    if _NUM_HEDGE.search(span.replace("\\text{", " ").replace("}", " ")):
        nums = tuple(dict.fromkeys(_canon_number(m.group(0)) for m in _NUMBER.finditer(span)))
        return Extraction(num, rule, nums if len(nums) > 1 else ())
    return Extraction(num, rule, ())


# --------------------------------------------------------------------------- exact match


def normalize_exact(s: str) -> str:
    """Normal form for exact string answers: no spaces, ``$``, thousands commas or final
    period; unicode minus as ``-``; ``\\text{}`` unwrapped."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("−", "-").replace("{,}", ",")
    s = _LATEX_DROP.sub("", s)
    s = _WS.sub("", s)
    s = s.rstrip(".")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    return s


# --------------------------------------------------------------------------- choice

_LETTER_TOKEN = r"\(?\s*(?:\\text(?:bf)?\{\s*\(?)?\s*((?-i:[A-Z]))\s*\)?\s*\}?\s*\)?"
_CHOICE_ANSWER_IS = re.compile(
    r"(?:final\s+answer\s*(?:is|:)|the\s+(?:correct\s+)?(?:answer|option|choice)\s+is"
    r"|\banswer\s*:)\s*(?::\s*)?(?:option\s+|choice\s+)?[*$\s]*" + _LETTER_TOKEN + r"(?![A-Za-z])",
    re.IGNORECASE,
)
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_LINE_LETTER = re.compile(r"(?m)^\s*\**([A-Z])[).:]\**(?:\s|$)")
_CHOICE_HEDGE = re.compile(
    r"\(?\b([A-Z])\b\)?\s*(?:,\s*|\s+)(?:or|and/or)\s+(?:option\s+)?\(?\b([A-Z])\b\)?"
)


def parse_choice_reference(reference: str) -> tuple[str, dict[str, str]]:
    """Split a choice reference into (letter, options). Accepts a bare letter ("B") or a
    JSON object ``{"answer": "B", "options": {"A": "...", ...}}``. Raises ValueError (with
    the bad value) when it is neither: a bad *reference* is a caller error."""
    ref = reference.strip()
    if ref.startswith("{"):
        try:
            obj = json.loads(ref)
        except json.JSONDecodeError as e:
            raise ValueError(f"choice reference is not valid JSON: {reference[:200]!r}") from e
        if not isinstance(obj, Mapping) or "answer" not in obj:
            raise ValueError(f"choice reference JSON needs an 'answer' key: {reference[:200]!r}")
        letter = str(obj["answer"]).strip().upper()
        raw_opts = obj.get("options") or {}
        if not isinstance(raw_opts, Mapping):
            raise ValueError(f"choice reference 'options' must be an object: {raw_opts!r}")
        options = {str(k).strip().upper(): str(v) for k, v in raw_opts.items()}
    else:
        letter = ref.strip("()").strip().upper()
        options = {}
    if not re.fullmatch(r"[A-Z]", letter):
        raise ValueError(f"choice reference answer must be one letter A-Z, got {letter!r}")
    if options and letter not in options:
        raise ValueError(f"choice reference answer {letter!r} is not among {sorted(options)}")
    return letter, options


def _norm_option(s: str) -> str:
    s = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", "").replace("\\", "")
    s = _WS.sub(" ", s).strip().rstrip(".").strip().lower()
    return s


def extract_choice(
    text: str,
    *,
    options: Mapping[str, str] | None = None,
    strict: bool = False,
    question: str | None = None,
) -> Extraction | None:
    """Read a multiple-choice letter: ``\\boxed{B}``; "the answer is (B)"/"Answer: B"; the
    option text itself when options are known; in flexible mode also a last ``(B)`` or a
    line starting ``B)``. Letters outside the known options are ignored, and so are
    verbatim restatements of ``question``."""
    body = _answer_body(text, question)
    valid = set(options) if options else None

    def ok(letter: str) -> bool:
        return valid is None or letter in valid

    letters = [x for x in (_letter_of(b, options) for b in find_boxed(body)) if x and ok(x)]
    if letters:
        distinct = tuple(dict.fromkeys(letters))
        return Extraction(letters[-1], "boxed", distinct if len(distinct) > 1 else ())
    hedge = _CHOICE_HEDGE.search(body[-400:])
    matches = [m for m in _CHOICE_ANSWER_IS.finditer(body) if ok(m.group(1).upper())]
    if matches:
        m = matches[-1]
        line_end = body.find("\n", m.end())
        tail = body[m.start() : line_end if line_end >= 0 else len(body)][:300]
        h = _CHOICE_HEDGE.search(tail)
        if h and h.group(1) != h.group(2) and ok(h.group(1)) and ok(h.group(2)):
            return Extraction(m.group(1).upper(), "answer-is", (h.group(1), h.group(2)))
        return Extraction(m.group(1).upper(), "answer-is", ())
    if options:
        # the cleaned span keeps only a leading math segment ("$42$ kg" -> "42"); an option
        # text may go on after it, so the raw line is tried too
        raw = _answer_is_raw(body)
        for cand in (raw and _clean_span(raw), raw, body.strip()):
            if cand:
                letter = _match_option(cand, options)
                if letter:
                    return Extraction(letter, "option-text", ())
    if strict:
        return None
    parens = [m.group(1) for m in _PAREN_LETTER.finditer(body) if ok(m.group(1))]
    lines = [m.group(1) for m in _LINE_LETTER.finditer(body) if ok(m.group(1))]
    if hedge and hedge.group(1) != hedge.group(2) and ok(hedge.group(1)) and ok(hedge.group(2)):
        return Extraction(hedge.group(2), "hedge", (hedge.group(1), hedge.group(2)))
    if parens:
        return Extraction(parens[-1], "paren-letter", ())
    if lines:
        return Extraction(lines[-1], "line-letter", ())
    if valid is not None or len(body.strip()) <= 3:
        single = re.fullmatch(r"\s*\(?([A-Z])\)?[.]?\s*", body)
        if single and ok(single.group(1)):
            return Extraction(single.group(1), "bare-letter", ())
    return None


def _letter_of(box: str, options: Mapping[str, str] | None) -> str | None:
    m = re.fullmatch(r"\s*" + _LETTER_TOKEN + r"\s*[.]?\s*", box)
    if m:
        return m.group(1)
    if options:
        return _match_option(box, options)
    return None


def _match_option(span: str, options: Mapping[str, str]) -> str | None:
    """The letter whose option text equals ``span`` (normalised); None if not exactly one."""
    target = _norm_option(span)
    if not target:
        return None
    hits = [k for k, v in options.items() if _norm_option(v) == target]
    return hits[0] if len(hits) == 1 else None
