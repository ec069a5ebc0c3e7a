"""The summariser contract: what a backend offers, the tender text it summarises, the content hash that lets an
unchanged text skip re-summarising, its configuration, and its errors.

Error policy: `SummariserConfigError` and `ModelLoadError` stop start-up (a configured model that cannot load is
never replaced by another backend behind the operator's back); `GenerationError` is raised by `summarise_batch` when
the model fails at run time (e.g. out of memory): not the event's fault, so the batch runner backs off and retries
the batch (sinks.errors: an error nobody classified), it never dead-letters it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import Field
from pydantic.dataclasses import dataclass

from schema.checked import STRICT, checked

Backend = Literal["extractive", "transformers"]
BACKENDS: tuple[Backend, ...] = ("extractive", "transformers")
# The production abstractive model; used only when the configuration asks for the transformers backend by name.
DEFAULT_MODEL = "facebook/bart-large-cnn"

# eTenders fills empty free-text fields with these; summarising them would only add noise.
_PLACEHOLDERS = frozenset({"", "n/a", "na", "none", "nil", "null", "-", "--", "not applicable", "no"})
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
Positive = Annotated[int, Field(ge=1)]


class SummariserError(Exception):
    """Root of the summaries package's errors."""


class SummariserConfigError(SummariserError, ValueError):
    """A summariser setting is invalid; the message names the setting and the fix."""


class ModelLoadError(SummariserError):
    """A configured model cannot be loaded; the message says what to fix. Start-up stops: there is no fallback."""


class GenerationError(SummariserError):
    """The model failed while summarising a batch (e.g. out of memory); the batch runner backs off and retries."""


@runtime_checkable
class Summariser(Protocol):
    """A loaded summariser. `summarise_batch` blocks (CPU-bound): call it from a thread or process pool."""

    @property
    def name(self) -> str:
        """The backend: "extractive" or "transformers"."""
        ...

    @property
    def model_used(self) -> str:
        """What produced a summary, precisely enough that a change of model or settings changes the content hash."""
        ...

    def summarise_batch(self, texts: Sequence[str]) -> list[str]:
        """One summary per text, in order; an empty text gives an empty summary."""
        ...


def content_hash(text: str, model_used: str) -> str:
    """sha256 of a text and the summariser that would summarise it: equal hashes mean the stored summary still holds."""
    # JSON framing keeps the two parts apart: no (model, text) pair can collide with another by moving a separator.
    framed = json.dumps([model_used, text], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(framed.encode("utf-8")).hexdigest()


_TEXT = "a string or None"


@checked(ValueError, {"compulsory": "a bool", "date": "a datetime or None", "venue": _TEXT})
@dataclass(frozen=True, config=STRICT)
class BriefingSession:
    """A tender's briefing session (eTenders `briefingSession` when `isSession` is true)."""

    compulsory: bool
    date: dt.datetime | None = None
    venue: str | None = None

    def phrase(self) -> str:
        """e.g. "compulsory briefing session on 2025-09-29 11:00 at 94 Fitzpatrick Road"."""
        parts = ["compulsory briefing session" if self.compulsory else "non-compulsory briefing session"]
        if self.date is not None:
            parts.append(f"on {_when(self.date)}")
        venue = _one_line(self.venue).rstrip(" .;")
        if venue:
            parts.append(f"at {venue}")
        return " ".join(parts)


@checked(
    ValueError,
    {
        "tender_id": "a positive int",
        "title": "a string",
        "closing_at": "a datetime or None",
        "briefing": "a BriefingSession or None",
        **dict.fromkeys(("description", "special_conditions", "category", "buyer"), _TEXT),
    },
)
@dataclass(frozen=True, config=STRICT)
class SummaryInput:
    """The parts of a tender that a summary is made from; `text()` joins them the same way every time, so the same
    tender always gives the same text and the same content hash."""

    tender_id: Annotated[int, Field(ge=1)]
    title: str
    description: str | None = None
    special_conditions: str | None = None
    category: str | None = None
    buyer: str | None = None
    closing_at: dt.datetime | None = None
    briefing: BriefingSession | None = None

    @classmethod
    def from_ocds(cls, tender_id: int, release: Mapping[str, Any]) -> SummaryInput:
        """Build from an OCDS release (the tenders row's raw_ocds). eTenders puts the tender number in
        `tender.title` and the real title in `tender.description`; both end up in the text."""
        tender = _mapping(release.get("tender"), "tender")
        buyer = _mapping(release.get("buyer"), "buyer").get("name")
        if buyer is None:  # the eTenders portal export names the buyer as the procuring entity
            buyer = _mapping(tender.get("procuringEntity"), "tender.procuringEntity").get("name")
        category = tender.get("category")
        if category is None:  # UK Contracts Finder: CPV classification instead of a category
            category = _mapping(tender.get("classification"), "tender.classification").get("description")
        period = _mapping(tender.get("tenderPeriod"), "tender.tenderPeriod")
        session = _mapping(tender.get("briefingSession"), "tender.briefingSession")
        briefing = None
        if session.get("isSession"):
            briefing = BriefingSession(
                compulsory=bool(session.get("compulsory")),
                date=_parse_datetime(session.get("date"), "tender.briefingSession.date"),
                venue=session.get("venue"),
            )
        return cls(
            tender_id=tender_id,
            title=tender.get("title") or "",
            description=tender.get("description"),
            special_conditions=tender.get("specialConditions"),
            category=category,
            buyer=buyer,
            closing_at=_parse_datetime(period.get("endDate"), "tender.tenderPeriod.endDate"),
            briefing=briefing,
        )

    def text(self) -> str:
        """Paragraphs: what is bought (title and description), the facts a bidder needs (buyer, category, closing,
        briefing), then the special conditions. Abstractive models weigh the start most, so the subject leads."""
        # eTenders descriptions are titles hard-wrapped at odd places ("Erf 836 Dunns\nGrant, measuring"): a single
        # line break there is a space. Special conditions keep theirs: they list one condition per line.
        head = _unwrap(_clean(self.description))
        title = _one_line(self.title)
        if title and head and title.casefold() not in head.casefold():
            head = f"{title.rstrip(':. ')}: {head}"
        head = head or title
        if head and head[-1] not in ".!?":
            # Titles carry no full stop; without one the subject would run into the facts sentence.
            head += "."
        # One sentence for the facts: an extractive summary keeps or drops them together, and a short tender
        # (subject + facts) stays whole.
        facts = []
        if _one_line(self.buyer):
            facts.append(f"buyer: {_one_line(self.buyer).rstrip(' .;')}")
        if _one_line(self.category):
            facts.append(f"category: {_one_line(self.category).rstrip(' .;')}")
        if self.closing_at is not None:
            facts.append(f"closing date: {_when(self.closing_at)}")
        if self.briefing is not None:
            facts.append(self.briefing.phrase())
        fact_sentence = "; ".join(facts) + "." if facts else ""
        fact_sentence = fact_sentence[:1].upper() + fact_sentence[1:]
        conditions = _clean(self.special_conditions)
        if conditions.strip(" .").casefold() in _PLACEHOLDERS:
            conditions = ""
        return "\n\n".join(p for p in (head, fact_sentence, conditions) if p)


def _summariser(name: str) -> str:
    return f"summariser {name}"


@checked(
    SummariserConfigError,
    {
        "backend": f"one of {', '.join(BACKENDS)}",
        "model": "a non-empty string or unset",
        "max_input_tokens": "an int >= 16",
        "device": "cpu, cuda, cuda:N or mps",
        "local_files_only": "a bool",
        **dict.fromkeys(("max_summary_tokens", "num_beams", "batch_size", "max_rounds", "sentences"), "an int >= 1"),
    },
    _summariser,
)
@dataclass(frozen=True, config=STRICT)
class SummariserConfig:
    """How to summarise. The extractive backend needs no model; the transformers backend loads `model` (a local
    directory written by `save_pretrained`, or a Hugging Face model name, DEFAULT_MODEL when unset) once."""

    backend: Backend = "extractive"
    # Local directory (loaded with local_files_only) or model name (loaded from the Hugging Face cache; the hub
    # library's HF_HUB_OFFLINE is honoured). Only for the transformers backend.
    model: str | None = None
    # Tokens per chunk fed to the encoder, special tokens included; None = the model's own limit.
    max_input_tokens: Annotated[int, Field(ge=16)] | None = None
    # Longest summary of one chunk, in generated tokens.
    max_summary_tokens: Positive = 142
    num_beams: Positive = 4
    # Chunks per generate call.
    batch_size: Positive = 8
    device: Annotated[str, Field(pattern=_DEVICE.pattern)] = "cpu"
    # Load a model name from the local cache only, never from the network (a directory is always local only).
    local_files_only: bool = False
    # Bound on summarising the joined chunk summaries again while they are longer than the model's input.
    max_rounds: Positive = 3
    # Sentences kept by the extractive backend.
    sentences: Positive = 3

    def __post_init__(self) -> None:
        if self.model is not None and not self.model.strip():
            raise SummariserConfigError(f"summariser model must be a non-empty string or unset, got {self.model!r}")
        if self.backend == "extractive" and self.model is not None:
            raise SummariserConfigError(
                f"summariser model {self.model!r} is set but the backend is 'extractive': set the backend to "
                "'transformers' to use the model, or unset the model"
            )
        if self.max_input_tokens is not None and self.max_summary_tokens * 2 > self.max_input_tokens:
            # A chunk summary must be clearly shorter than a chunk, or summarising the summaries never converges.
            raise SummariserConfigError(
                f"summariser max_summary_tokens ({self.max_summary_tokens}) must be at most half of "
                f"max_input_tokens ({self.max_input_tokens})"
            )

    @property
    def model_name(self) -> str | None:
        """The model the transformers backend loads (DEFAULT_MODEL when unset); None for the extractive backend."""
        if self.backend != "transformers":
            return None
        return self.model or DEFAULT_MODEL


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"OCDS {where} must be an object, got {type(value).__name__}")
    return value


def _parse_datetime(value: object, where: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"OCDS {where} must be an ISO 8601 string, got {value!r}")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"OCDS {where} is not an ISO 8601 date-time: {value!r}") from exc


def _clean(text: str | None) -> str:
    """Unify line endings and blank runs, keep line breaks (eTenders lists one condition per line)."""
    if not text:
        return ""
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _unwrap(text: str) -> str:
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _one_line(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _when(value: dt.datetime) -> str:
    # Shown in the tender's own clock (eTenders gives SAST offsets): converting to UTC would show a different day.
    if (value.hour, value.minute, value.second) == (0, 0, 0):
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M")
