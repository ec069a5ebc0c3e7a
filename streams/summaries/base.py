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
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Backend = Literal["extractive", "transformers"]
BACKENDS: tuple[Backend, ...] = ("extractive", "transformers")
# The production abstractive model; used only when the configuration asks for the transformers backend by name.
DEFAULT_MODEL = "facebook/bart-large-cnn"

# eTenders fills empty free-text fields with these; summarising them would only add noise.
_PLACEHOLDERS = frozenset({"", "n/a", "na", "none", "nil", "null", "-", "--", "not applicable", "no"})
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


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


@dataclass(frozen=True)
class BriefingSession:
    """A tender's briefing session (eTenders `briefingSession` when `isSession` is true)."""

    compulsory: bool
    date: dt.datetime | None = None
    venue: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.compulsory, bool):
            raise ValueError(f"compulsory must be a bool, got {self.compulsory!r}")
        _check_datetime("date", self.date)
        _check_str("venue", self.venue)

    def phrase(self) -> str:
        """e.g. "compulsory briefing session on 2025-09-29 11:00 at 94 Fitzpatrick Road"."""
        parts = ["compulsory briefing session" if self.compulsory else "non-compulsory briefing session"]
        if self.date is not None:
            parts.append(f"on {_when(self.date)}")
        venue = _one_line(self.venue).rstrip(" .;")
        if venue:
            parts.append(f"at {venue}")
        return " ".join(parts)


@dataclass(frozen=True)
class SummaryInput:
    """The parts of a tender that a summary is made from; `text()` joins them the same way every time, so the same
    tender always gives the same text and the same content hash."""

    tender_id: int
    title: str
    description: str | None = None
    special_conditions: str | None = None
    category: str | None = None
    buyer: str | None = None
    closing_at: dt.datetime | None = None
    briefing: BriefingSession | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tender_id, bool) or not isinstance(self.tender_id, int) or self.tender_id < 1:
            raise ValueError(f"tender_id must be a positive int, got {self.tender_id!r}")
        if not isinstance(self.title, str):
            raise ValueError(f"title must be a string, got {type(self.title).__name__}")
        for name in ("description", "special_conditions", "category", "buyer"):
            _check_str(name, getattr(self, name))
        _check_datetime("closing_at", self.closing_at)
        if self.briefing is not None and not isinstance(self.briefing, BriefingSession):
            raise ValueError(f"briefing must be a BriefingSession or None, got {type(self.briefing).__name__}")

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


@dataclass(frozen=True)
class SummariserConfig:
    """How to summarise. The extractive backend needs no model; the transformers backend loads `model` (a local
    directory written by `save_pretrained`, or a Hugging Face model name, DEFAULT_MODEL when unset) once."""

    backend: Backend = "extractive"
    # Local directory (loaded with local_files_only) or model name (loaded from the Hugging Face cache; the hub
    # library's HF_HUB_OFFLINE is honoured). Only for the transformers backend.
    model: str | None = None
    # Tokens per chunk fed to the encoder, special tokens included; None = the model's own limit.
    max_input_tokens: int | None = None
    # Longest summary of one chunk, in generated tokens.
    max_summary_tokens: int = 142
    num_beams: int = 4
    # Chunks per generate call.
    batch_size: int = 8
    device: str = "cpu"
    # Load a model name from the local cache only, never from the network (a directory is always local only).
    local_files_only: bool = False
    # Bound on summarising the joined chunk summaries again while they are longer than the model's input.
    max_rounds: int = 3
    # Sentences kept by the extractive backend.
    sentences: int = 3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SummariserConfigError(
                f"summariser backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}"
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise SummariserConfigError(f"summariser model must be a non-empty string or unset, got {self.model!r}")
        if self.backend == "extractive" and self.model is not None:
            raise SummariserConfigError(
                f"summariser model {self.model!r} is set but the backend is 'extractive': set the backend to "
                "'transformers' to use the model, or unset the model"
            )
        _check_int("max_summary_tokens", self.max_summary_tokens, 1)
        _check_int("num_beams", self.num_beams, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("max_rounds", self.max_rounds, 1)
        _check_int("sentences", self.sentences, 1)
        if self.max_input_tokens is not None:
            _check_int("max_input_tokens", self.max_input_tokens, 16)
            if self.max_summary_tokens * 2 > self.max_input_tokens:
                # A chunk summary must be clearly shorter than a chunk, or summarising the summaries never converges.
                raise SummariserConfigError(
                    f"summariser max_summary_tokens ({self.max_summary_tokens}) must be at most half of "
                    f"max_input_tokens ({self.max_input_tokens})"
                )
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise SummariserConfigError(f"summariser device must be cpu, cuda, cuda:N or mps, not {self.device!r}")
        if not isinstance(self.local_files_only, bool):
            raise SummariserConfigError(f"summariser local_files_only must be a bool, got {self.local_files_only!r}")

    @property
    def model_name(self) -> str | None:
        """The model the transformers backend loads (DEFAULT_MODEL when unset); None for the extractive backend."""
        if self.backend != "transformers":
            return None
        return self.model or DEFAULT_MODEL


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SummariserConfigError(f"summariser {name} must be an int >= {minimum}, got {value!r}")


def _check_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {type(value).__name__}")


def _check_datetime(name: str, value: object) -> None:
    if value is not None and not isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be a datetime or None, got {value!r}")


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
