"""How an answer becomes an animal label: first word, lower case, punctuation and plural gone; an answer
without a word is `<empty>`, whatever a sampled answer holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sl_scaling.evaluation.parsing import EMPTY_ANSWER, parse_answer


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Dolphin", "dolphin"),
        ("  **Wolves!** They hunt in packs.", "wolf"),
        ("\u00a0Owls\u3000are wise", "owl"),  # Unicode spaces around the first word
        ("", EMPTY_ANSWER),
        ("...", EMPTY_ANSWER),
        ("\u3000", EMPTY_ANSWER),  # only Unicode whitespace, which str.strip's ASCII set leaves
        ("\x1c\x1d", EMPTY_ANSWER),
        ("\u2003! \u2003", EMPTY_ANSWER),
    ],
)
def test_answers_parse_to_their_first_words_animal(answer: str, label: str) -> None:
    assert parse_answer(answer) == label


@given(st.text())
def test_any_sampled_text_parses_to_a_label(answer: str) -> None:
    """A student at temperature 1 can answer anything (the tiny model's answers are random tokens)."""
    label = parse_answer(answer)
    assert label == EMPTY_ANSWER or (label and not any(c.isspace() for c in label))
