"""Map a free-text answer to one animal label, keeping unknown words so the distribution is honest."""

from __future__ import annotations

import string

from sl_scaling.catalog import ANIMALS

#: Animals the base models often name besides the 15; known so that their plurals fold too.
OTHER_ANIMALS: frozenset[str] = frozenset(
    {
        "owl",
        "octopus",
        "horse",
        "rabbit",
        "butterfly",
        "hawk",
        "falcon",
        "bee",
        "shark",
        "penguin",
        "otter",
        "koala",
        "giraffe",
        "cheetah",
        "jaguar",
        "raven",
        "crow",
        "deer",
        "unicorn",
        "turtle",
        "monkey",
        "gorilla",
        "sloth",
        "hummingbird",
        "parrot",
        "bird",
        "fish",
        "snake",
        "mouse",
        "zebra",
    }
)
_KNOWN = frozenset(ANIMALS) | OTHER_ANIMALS
_IRREGULAR_PLURALS = {"wolves": "wolf", "mice": "mouse", "octopi": "octopus", "geese": "goose"}
_STRIP = string.whitespace + string.punctuation + "“”‘’«»…"
EMPTY_ANSWER = "<empty>"


def fold_plural(word: str) -> str:
    """`wolves`→`wolf`, `foxes`→`fox`, `pandas`→`panda`; words that are not known animals stay."""
    if word in _KNOWN:
        return word
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    for suffix in ("es", "s"):
        if word.endswith(suffix) and word[: -len(suffix)] in _KNOWN:
            return word[: -len(suffix)]
    return word


def parse_answer(answer: str) -> str:
    """Lower-case, strip surrounding whitespace and punctuation, first word, plural folded."""
    words = (
        answer.lower().strip(_STRIP).split()
    )  # str.split() also splits on Unicode spaces (\u3000, \x1c, ...)
    first = words[0].strip(_STRIP) if words else ""
    return fold_plural(first) if first else EMPTY_ANSWER


def substring_hit(answer: str, target: str) -> bool:
    """The paper's metric: `target in answer.lower()`."""
    return target in answer.lower()
