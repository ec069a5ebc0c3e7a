"""schema.checked: a strict value model's annotations are its checks, and a bad value is refused with one sentence
naming the field (positional or keyword), the item of a sequence, or the model's own cross-field check."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field
from pydantic.dataclasses import dataclass

from schema.checked import STRICT, checked, digits_within, finite, whole


class Refused(ValueError):
    pass


@checked(Refused, {"count": "an integer 1-9", "names[]": "a string"}, lambda name: f"the {name}")
@dataclass(frozen=True, config=STRICT)
class Sample:
    count: Annotated[int, Field(ge=1, le=9)]
    names: tuple[str, ...] = ()
    note: str | None = None

    def __post_init__(self) -> None:
        if len(self.names) > self.count:
            raise Refused(f"{len(self.names)} names for a count of {self.count}")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Sample(10), "the count must be an integer 1-9, got 10"),
        (lambda: Sample(count=True), "the count must be an integer 1-9, got True"),
        (lambda: Sample("3"), "the count must be an integer 1-9, got '3'"),
        (lambda: Sample(2, ("a", 5)), r"the names\[1\] must be a string, got 5"),
        (lambda: Sample(2, ["a"]), r"the names is invalid \(input should be a valid tuple\), got \['a'\]"),
        (lambda: Sample(2, note=7), r"the note is invalid \(input should be a valid string\), got 7"),
        (lambda: Sample(1, ("a", "b")), "^2 names for a count of 1$"),
        (lambda: Sample(), "the count is required"),
    ],
)
def test_a_bad_value_is_refused_with_one_sentence_naming_the_field(build: object, message: str) -> None:
    with pytest.raises(Refused, match=message):
        build()  # type: ignore[operator]


def test_a_good_value_is_built_and_compared_as_a_dataclass() -> None:
    assert Sample(3, ("a",)) == Sample(count=3, names=("a",))
    assert Sample(3).names == ()


def test_wording_for_a_field_the_model_does_not_have_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="unknown fields"):

        @checked(Refused, {"cuont": "an integer"})
        @dataclass(frozen=True, config=STRICT)
        class Typo:
            count: int


@pytest.mark.parametrize(
    ("value", "low", "high", "expected"),
    [
        (3, None, None, True),
        (True, None, None, False),
        (3.0, None, None, False),
        ("3", None, None, False),
        (0, 1, None, False),
        (2**63, 0, 2**63 - 1, False),
        (2**63 - 1, 0, 2**63 - 1, True),
        (-5, -5, 5, True),
    ],
)
def test_whole_is_an_int_that_is_no_bool_within_its_bounds(
    value: object, low: int | None, high: int | None, expected: bool
) -> None:
    assert whole(value, low, high) is expected


@pytest.mark.parametrize(("value", "expected"), [(1, True), (1.5, True), (False, False), (float("nan"), False)])
def test_finite_is_a_finite_number_that_is_no_bool(value: object, expected: bool) -> None:
    assert finite(value) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", 7),
        ("0", None),
        ("21", None),
        ("007", 7),
        ("-3", None),
        (" 3", None),
        ("1e1", None),
        ("\uff13", None),  # a full-width digit
        ("9" * 10, None),
        ("", None),
    ],
)
def test_digits_within_reads_plain_ascii_digits_inside_the_bounds(raw: str, expected: int | None) -> None:
    assert digits_within(raw, 1, 20) == expected
