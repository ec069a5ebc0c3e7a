"""Value models whose annotations are their checks, and whose construction errors read as one sentence.

A stored state or a fact the rules read is a strict, frozen pydantic dataclass: its annotations say what each field
must be (`Annotated[int, Field(ge=1, le=MAX_ID)]` instead of `isinstance(v, bool) or not isinstance(v, int) or ...`).
`checked` turns pydantic's ValidationError at construction into the caller's own error type, with one sentence that
names the field and what it must be ("bbbee_level must be an integer 1-8 or null (non-compliant), got 9"), the form
the readiness rules' errors have always had. A ValueError raised by the model's own `__post_init__` (a check across
fields) keeps its message.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard, TypeVar

from pydantic import ConfigDict, ValidationError

# No coercion: "3" is not 3, True is not 1, 1.5 is not an integer.
STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)
_SHOWN_CHARS = 40

T = TypeVar("T")


def explain(
    exc: ValidationError, names: tuple[str, ...], must: Mapping[str, str], label: Callable[[str], str] = str
) -> str:
    """One sentence for the first error of `exc`. `names`: the model's fields in order (pydantic locates a
    positional argument by its index); `must`: what each field must be, and `"name[]"` what each item of a
    sequence field must be; `label`: how a field is named in the sentence."""
    first = exc.errors(include_url=False)[0]
    error = (first.get("ctx") or {}).get("error")
    if first["type"] in ("value_error", "assertion_error") and isinstance(error, Exception):
        return str(error)
    loc = list(first["loc"])
    if loc and isinstance(loc[0], int) and loc[0] < len(names):
        loc[0] = names[loc[0]]
    name = str(loc[0]) if loc else "value"
    items = [p for p in loc[1:] if isinstance(p, int)]
    where = name + "".join(f"[{i}]" for i in items)
    if first["type"] in ("missing", "missing_argument"):
        return f"{label(where)} is required"
    shown = repr(first.get("input"))[:_SHOWN_CHARS]
    phrase = (must.get(f"{name}[]") if items else None) or must.get(name)
    if phrase is None:
        return f"{label(where)} is invalid ({first['msg'][:1].lower()}{first['msg'][1:]}), got {shown}"
    return f"{label(where)} must be {phrase}, got {shown}"


def checked(
    error: Callable[[str], Exception], must: Mapping[str, str], label: Callable[[str], str] = str
) -> Callable[[type[T]], type[T]]:
    """Class decorator, applied above `@pydantic.dataclasses.dataclass(config=STRICT)`: constructing the model
    raises `error(sentence)` instead of a ValidationError (see `explain`)."""

    def wrap(cls: type[T]) -> type[T]:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)  # type: ignore[arg-type]
        unknown = set(must) - {*names, *(f"{n}[]" for n in names)}
        if unknown:
            raise TypeError(f"{cls.__name__}: `must` names unknown fields {sorted(unknown)}")
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise error(explain(exc, names, must, label)) from None

        setattr(cls, "__init__", __init__)  # noqa: B010 (mypy refuses assigning to a method)
        return cls

    return wrap


def unchecked(value: Any) -> Any:
    """A raw value (a payload's, a stored document's) handed to a checked model as it is: the model's annotations
    check it, so its static type does not matter here."""
    return value


def whole(value: object, low: int | None = None, high: int | None = None) -> TypeGuard[int]:
    """An int that is not a bool (Python and JSON both let True pass for 1), within [low, high] where given: the one
    hand-written integer check, for a boundary where no model is built (a sink's arguments, one field read back)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def finite(value: object) -> TypeGuard[int | float]:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_DIGITS_MAX = 9  # a longer number is out of every bound a query parameter has, and int() stays cheap


def digits_within(raw: str, low: int, high: int) -> int | None:
    """A request parameter's text as an integer in [low, high]: plain ASCII digits only (no sign, spaces, "1e3",
    full-width digits), at most 9 of them; None otherwise (the caller names the parameter in its own error)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > _DIGITS_MAX:
        return None
    value = int(raw)
    return value if low <= value <= high else None


def encodable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates, which JSON escapes can carry) written as backslash
    escapes: for text that quotes a refused value and must itself be written (dead letters, their headers, logs)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
