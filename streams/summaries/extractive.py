"""Offline extractive summariser: splits a tender text into sentences, ranks them with TextRank over TF-IDF cosine
similarity, and returns the best few verbatim, in their original order. Pure Python, deterministic, invents nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass as model

from schema.checked import STRICT, checked

# Bump when splitting or scoring changes: it is part of model_used, so stored summaries get recomputed.
ALGORITHM = "textrank-tfidf-v1"

# Never end a sentence (titles and Latin abbreviations); compared case-folded, so ALL-CAPS eTenders text matches.
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "adv", "hon", "rev", "st", "rd", "ave", "dept", "govt", "pty", "approx",
        "incl", "excl", "est", "vs", "viz", "cf", "eg", "ie", "al", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
        "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
# End no sentence when a number follows: "NO. 5", "Ref. 12/2025", "Tel. 012 ...".
_BEFORE_NUMBER = frozenset(
    {"no", "nr", "nos", "ref", "tel", "fax", "cell", "vol", "p", "pp", "fig", "cl", "para", "sec", "sect", "art", "reg"}
)
_STOPWORD_TEXT = """
    a about above after all also an and any are as at be been before being below between both but by can could did
    do does doing during each for from further had has have having he her here hers him his how i if in into is it
    its itself just may me might more most must my no nor not of off on once only or other our out over own same
    shall she should so some such than that the their them then there these they this those through to too under
    until up upon very was we were what when where which while who whom why will with within would you your
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# A sentence break: stops, closing quotes or brackets, then whitespace; or a line break. Linear on any text: a run
# of stops (or of blanks before a line break) is only entered at its first character, and possessively, so a run
# that ends without the whitespace a break needs is scanned once, not once from each of its characters (20,000
# dots took 4 s, holding the GIL). A match never ends inside such a run (it ends after all the whitespace), so
# starting mid-run could only find what starting at the run's first character already found.
_BREAK = re.compile(r"(?<![.!?])(?P<stop>[.!?]++[\"'\u201d\u2019)\]]*+)(?P<gap>\s++)|(?<![ \t])(?P<nl>[ \t]*+\n\s*+)")
_BULLET = re.compile(r"[\s\u2022\u00b7\u25aa\u25e6\u25cf\u25cb\u25a0\u25a1\u27a2\u27a4\u25ba*\u2013\u2014-]++")
_LIST_NUMBER = re.compile(r"\d{1,2}+(?:\.\d{1,2}+)*+")
_DOTTED = re.compile(r"(?:[a-z]\.)++[a-z]")
_TERM = re.compile(r"\w+")
# TextRank's graph is quadratic in sentences; later sentences of a very long text are kept out of it (and out of
# the summary) so one huge document cannot stall a worker.
MAX_GRAPH_SENTENCES = 120
# A candidate this similar to an already chosen sentence adds nothing (eTenders texts repeat themselves).
_REDUNDANT = 0.7
_DAMPING = 0.85


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, in order; text[start:end] is the sentence, verbatim."""
    raw: list[tuple[int, int]] = []
    start = 0
    for m in _BREAK.finditer(text):
        nxt = text[m.end()] if m.end() < len(text) else ""
        if m.group("stop") is not None:
            if _ends_sentence(text, m.start("stop"), m.group("stop"), nxt):
                raw.append((start, m.end("stop")))
                start = m.end()
            elif "\n" in m.group("gap") and _breaks_line(m.group("gap"), nxt):
                raw.append((start, m.start("gap")))
                start = m.end()
        elif _breaks_line(m.group("nl"), nxt):
            raw.append((start, m.start()))
            start = m.end()
    raw.append((start, len(text)))
    spans: list[tuple[int, int]] = []
    pending: int | None = None  # start of a fragment without letters ("1." alone on a line), glued to the next
    for s, e in raw:
        s = _skip_bullets(text, s, e)
        e = len(text[s:e].rstrip()) + s
        if s >= e:
            continue
        # Only this fragment is looked at: what is pending has no letters, and rescanning it for each fragment
        # glued to it was quadratic (". . . . ." is 10,000 fragments without letters).
        has_letters = any(c.isalpha() for c in text[s:e])
        if pending is not None:
            s, pending = pending, None
        if not has_letters:
            pending = s
            continue
        spans.append((s, e))
    if pending is not None:
        if spans:
            spans[-1] = (spans[-1][0], len(text.rstrip()))
        else:
            spans.append((pending, len(text.rstrip())))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, each with its inner whitespace collapsed to single spaces."""
    return [" ".join(text[s:e].split()) for s, e in sentence_spans(text)]


def _ends_sentence(text: str, stop_at: int, stop: str, nxt: str) -> bool:
    if nxt.islower():
        return False
    if not stop.startswith(".") or stop.startswith(".."):
        return True  # "?", "!" and an ellipsis end a sentence whatever precedes them
    word_start = stop_at
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:stop_at].lstrip("(\"'\u201c\u2018[").casefold()
    if word in _ABBREVIATIONS or (word in _BEFORE_NUMBER and nxt.isdigit()):
        return False
    if len(word) == 1 and word.isalpha():
        return False  # an initial: "J. SMITH"
    # "e.g.", "U.S." and list numbers ("1.", "2.1.") are not sentence ends.
    return not (_DOTTED.fullmatch(word) or _LIST_NUMBER.fullmatch(word))


def _breaks_line(gap: str, nxt: str) -> bool:
    """A blank line always ends a sentence; a single line break does unless the next line carries on in lower case
    (wrapped prose). eTenders lists put one item per line without a full stop."""
    return gap.count("\n") > 1 or not nxt.islower()


def _skip_bullets(text: str, start: int, end: int) -> int:
    m = _BULLET.match(text, start, end)
    return m.end() if m else start


def _terms(sentence: str) -> list[str]:
    out = []
    for word in _TERM.findall(sentence.casefold()):
        if word in _STOPWORDS or word.isdigit() or len(word) < 2 or "_" in word:
            continue
        # Crude plural folding: "SERVICES" and "service" should count as one term; no stemmer dependency.
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def _tfidf(docs: list[list[str]]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors, one per sentence; IDF over the sentences of this one text."""
    n = len(docs)
    df: Counter[str] = Counter()
    for terms in docs:
        df.update(set(terms))
    vectors = []
    for terms in docs:
        counts = Counter(terms)
        vec = {t: c * (math.log((1 + n) / (1 + df[t])) + 1.0) for t, c in counts.items()}
        norm = math.sqrt(sum(w * w for w in vec.values()))
        vectors.append({t: w / norm for t, w in vec.items()} if norm else {})
    return vectors


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def _pagerank(weights: list[list[float]], iterations: int = 60, tolerance: float = 1e-6) -> list[float]:
    n = len(weights)
    out_sum = [sum(row) for row in weights]
    # Incoming edges of each sentence as (source, share of the source's rank it passes on); the graph is sparse.
    inflows = [[(j, weights[j][i] / out_sum[j]) for j in range(n) if weights[j][i] > 0.0] for i in range(n)]
    dangling_nodes = [j for j in range(n) if out_sum[j] == 0.0]
    scores = [1.0 / n] * n
    for _ in range(iterations):
        # A sentence sharing no term with any other spreads its rank evenly, so ranks still sum to one.
        dangling = sum(scores[j] for j in dangling_nodes) / n
        new = [
            (1 - _DAMPING) / n + _DAMPING * (sum(share * scores[j] for j, share in edges) + dangling)
            for edges in inflows
        ]
        delta = sum(abs(x - y) for x, y in zip(new, scores, strict=True))
        scores = new
        if delta < tolerance:
            break
    return scores


def _rank(terms: list[list[str]]) -> tuple[list[float], list[dict[str, float]]]:
    vectors = _tfidf(terms)
    n = len(vectors)
    weights = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            weights[i][j] = weights[j][i] = _cosine(vectors[i], vectors[j])
    ranks = _pagerank(weights) if n else []
    # Few content words (a "Passcode: X" line) make a weak summary sentence however well connected it is.
    return [r * min(1.0, len(t) / 4) for r, t in zip(ranks, terms, strict=True)], vectors


@checked(ValueError, {"sentences": "an int >= 1"})
@model(frozen=True, config=STRICT)
class ExtractiveSummariser:
    """Keeps the first sentence (the tender's subject: eTenders texts open with what is bought) plus the most
    central others, up to `sentences` in all, skipping near-duplicates; output sentences keep the input's order."""

    sentences: Annotated[int, Field(ge=1)] = 3

    @property
    def name(self) -> str:
        return "extractive"

    @property
    def model_used(self) -> str:
        return f"extractive:{ALGORITHM}:sentences={self.sentences}"

    def summarise(self, text: str) -> str:
        sentences = split_sentences(text)
        if len(sentences) <= self.sentences:
            return " ".join(sentences)
        candidates = sentences[:MAX_GRAPH_SENTENCES]
        scores, vectors = _rank([_terms(s) for s in candidates])
        chosen = [0]
        for i in sorted(range(1, len(candidates)), key=lambda k: (-scores[k], k)):
            if len(chosen) == self.sentences:
                break
            if all(_cosine(vectors[i], vectors[c]) < _REDUNDANT for c in chosen):
                chosen.append(i)
        return " ".join(candidates[i] for i in sorted(chosen))

    def summarise_batch(self, texts: Sequence[str]) -> list[str]:
        return [self.summarise(t) for t in texts]
