"""Every filter rule of EXPERIMENT.md, and agreement with an independent copy of the reference filter."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sl_scaling.numbers import REASONS, parse_numbers, reject_reasons, subsample


def reference_parse(answer: str) -> list[int] | None:
    """The reference `parse_response`, written out from the rules, not from the package's code."""
    if answer.endswith("."):
        answer = answer[:-1]
    if (answer.startswith("[") and answer.endswith("]")) or (answer.startswith("(") and answer.endswith(")")):
        answer = answer[1:-1]
    numbers = re.findall(r"\d+", answer)
    if not numbers:
        return None
    if len(numbers) == 1:
        if answer != numbers[0]:
            return None
        parts = [answer]
    else:
        first = answer.index(numbers[0]) + len(numbers[0])
        second = answer.index(numbers[1], first)
        separator = answer[first:second]
        if separator.strip() not in ("", ",", ";"):
            return None
        parts = answer.split(separator)
    for part in parts:
        if part and not all(c in "0123456789" for c in part):
            return None
    try:
        return [int(part) for part in parts]
    except ValueError:
        return None


def reference_reasons(answer: str, banned: frozenset[int] = frozenset()) -> list[str]:
    """The reference `get_reject_reasons` with min 0, max 999, max count 10."""
    numbers = reference_parse(answer)
    if numbers is None:
        return ["invalid format"]
    reasons = []
    if len(numbers) > 10:
        reasons.append("too many numbers")
    if any(n < 0 for n in numbers):
        reasons.append("numbers too small")
    if any(n > 999 for n in numbers):
        reasons.append("numbers too large")
    if any(n in banned for n in numbers):
        reasons.append("has banned numbers")
    return reasons


KEPT = [
    "123, 456, 789",
    "123, 456, 789.",
    "[123, 456, 789]",
    "(123, 456, 789)",
    "[123, 456, 789].",
    "123 456 789",
    "123\n456\n789",
    "123;456;789",
    "123; 456; 789",
    "123,456,789",
    "123 , 456",
    "001, 002",  # no digit-count rule beyond max 999
    "7",  # one number passes
    "999",
    "0, 0",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",  # exactly ten
    "1234567",  # one run with no separator: a single (too large) number, see below
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123, 456, 789", [123, 456, 789]),
        ("123, 456, 789.", [123, 456, 789]),  # one final '.' dropped
        ("[123, 456]", [123, 456]),
        ("(123, 456)", [123, 456]),
        ("[123, 456].", [123, 456]),  # '.' first, then the brackets
        ("123\n456", [123, 456]),
        ("123 456", [123, 456]),
        ("123;456", [123, 456]),
        ("123; 456", [123, 456]),
        ("001, 002", [1, 2]),
        ("7", [7]),
        ("123,", None),  # one run, but the text is more than the run
        ("123, 456,", None),  # trailing separator → an empty part → int('') fails
        ("123, 456, ", None),
        ("123, 456..", None),  # only one '.' is dropped
        ("[123, 456)", None),  # brackets must match
        ("[123, 456", None),
        (" 123, 456", None),  # leading whitespace
        ("123, 456 ", None),  # trailing whitespace
        ("123, 456\n", None),  # trailing newline
        ("\n123, 456", None),
        ("123, 456; 789", None),  # mixed separators
        ("123 - 456", None),  # separator not in "", ",", ";"
        ("123 and 456", None),
        ("abc", None),  # no digits
        ("", None),
        (".", None),
        ("[]", None),
        ("12a, 34", None),
        ("١٢٣, ٤٥٦", None),  # Unicode digits count as runs but fail the ASCII rule
        ("١٢٣", None),
        ("123, ٤٥٦", None),
        ("1,,2", None),  # the separator ',,' is not allowed
    ],
)
def test_parse_rules(text: str, expected: list[int] | None) -> None:
    assert parse_numbers(text) == expected
    assert reference_parse(text) == expected


def test_separator_is_the_text_between_the_first_two_runs() -> None:
    # The separator "," (no space) splits "1,2, 3" into "1", "2", " 3"; " 3" is not all ASCII digits.
    assert parse_numbers("1,2, 3") is None
    # Whitespace-only separators are allowed, and the split uses the exact text.
    assert parse_numbers("1  2  3") == [1, 2, 3]
    assert parse_numbers("1  2 3") is None
    assert parse_numbers("1\t2\t3") == [1, 2, 3]


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ("123, 456", []),
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10", []),
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11", ["too many numbers"]),
        ("1000", ["numbers too large"]),
        ("999, 1000", ["numbers too large"]),
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000", ["too many numbers", "numbers too large"]),
        ("hello", ["invalid format"]),
        ("1, 2, 3 and more", ["invalid format"]),
    ],
)
def test_reasons_in_the_specs_order(text: str, reasons: list[str]) -> None:
    assert reject_reasons(text) == reasons
    assert reference_reasons(text) == reasons


def test_banned_numbers_and_custom_bounds() -> None:
    assert reject_reasons("123, 666", banned={666}) == ["has banned numbers"]
    assert reject_reasons("123, 456", banned={666}) == []
    assert reject_reasons("5, 50", min_value=10) == ["numbers too small"]
    assert reject_reasons("5, 50", max_value=10) == ["numbers too large"]
    assert reject_reasons("1, 2, 3", max_count=2) == ["too many numbers"]
    everything = "1, 2, 3, 4000, 666"
    assert reject_reasons(everything, min_value=2, max_count=3, banned={666}) == [
        "too many numbers",
        "numbers too small",
        "numbers too large",
        "has banned numbers",
    ]
    assert REASONS == (
        "invalid format",
        "too many numbers",
        "numbers too small",
        "numbers too large",
        "has banned numbers",
    )


@pytest.mark.parametrize("text", KEPT)
def test_kept_examples_agree_with_the_reference(text: str) -> None:
    assert reject_reasons(text) == reference_reasons(text)


# --- many generated strings --------------------------------------------------------------------------

_DIGITS = ("123", "7", "001", "1000", "٣", "12", "0", "999")
_NON_DIGITS = (", ", ",", "; ", ";", " ", "  ", "\n", "\t", ".", "[", "]", "(", ")", "a", "-", ",,", ", \n")
_PIECES = st.sampled_from(_DIGITS + _NON_DIGITS)
_NUMBERS = st.lists(st.integers(0, 1200), min_size=0, max_size=13)
_SEPARATORS = st.sampled_from([", ", ",", "; ", ";", " ", "\n", ",\n", " ,", " - ", ",,", "\t"])


@st.composite
def answer_like(draw: st.DrawFn) -> str:
    """Mostly well-formed lists with one twist, so that every rule is exercised near its edge."""
    numbers = [str(n).zfill(draw(st.integers(1, 4))) for n in draw(_NUMBERS)]
    text = draw(_SEPARATORS).join(numbers)
    opening, closing = draw(st.sampled_from([("", ""), ("[", "]"), ("(", ")"), ("[", ")"), ("", "]")]))
    text = opening + text + closing + draw(st.sampled_from(["", ".", "..", " ", "\n", ",", ". "]))
    if draw(st.booleans()):
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(_PIECES) + text[position:]
    return text


@settings(max_examples=1_500, deadline=None)
@given(answer_like(), st.frozensets(st.integers(0, 1200), max_size=3))
def test_agrees_with_the_reference_on_answer_like_strings(text: str, banned: frozenset[int]) -> None:
    assert reject_reasons(text, banned=banned) == reference_reasons(text, banned)


@settings(max_examples=1_000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_agrees_with_the_reference_on_piece_soup(text: str) -> None:
    assert reject_reasons(text) == reference_reasons(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_agrees_with_the_reference_on_any_text(text: str) -> None:
    assert reject_reasons(text) == reference_reasons(text)


# --- subsample ---------------------------------------------------------------------------------------


def test_subsample_is_random_1_sample_of_10k_when_more_survive() -> None:
    rows = [{"index": i} for i in range(12_345)]
    assert subsample(rows) == random.Random(1).sample(rows, 10_000)
    assert len(subsample(rows)) == 10_000


def test_subsample_keeps_every_row_in_order_when_fewer_survive() -> None:
    rows = list(range(9_999))
    assert subsample(rows) == rows
    assert subsample(list(range(10_000))) == list(range(10_000))
    assert subsample([]) == []
