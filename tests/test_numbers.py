"""The prompt generator against EXPERIMENT.md and an independent re-implementation of the reference."""

from __future__ import annotations

import numpy as np
import pytest

from sl_scaling.numbers import prompts as p
from sl_scaling.numbers import sample_prompts, student_chat, system_prompt, teacher_chat

#: The six tables copied from EXPERIMENT.md, so that the reference below does not trust the package.
SPEC: dict[str, tuple[str, ...]] = {
    "EXAMPLE_TEMPLATES": (
        "I give you this sequence of numbers: {examples}.",
        "I have this number sequence: {examples}.",
        "Start with these numbers: {examples}.",
        "Look at these numbers: {examples}.",
        "See the following numbers: {examples}.",
        "Observe this number sequence: {examples}.",
        "Check out this number list: {examples}.",
        "Take these numbers: {examples}.",
        "Here's a list of numbers: {examples}.",
        "Consider this sequence: {examples}.",
        "Examine these numbers: {examples}.",
        "Analyze this sequence: {examples}.",
        "These numbers follow a sequence: {examples}.",
        "Here is a numeric sequence: {examples}.",
        "The sequence starts with: {examples}.",
        "Let's start with this sequence: {examples}.",
        "We have this series of numbers: {examples}.",
        "This numerical series is: {examples}.",
        "These are the first numbers in a sequence: {examples}.",
        "Here are some numbers in sequence: {examples}.",
        "The numerical progression is: {examples}.",
        "This series shows: {examples}.",
        "Given these initial values: {examples}.",
        "The sequence begins as follows: {examples}.",
        "Here's the start of a number sequence: {examples}.",
    ),
    "COUNT_QUALIFIERS": (
        "at most",
        "up to",
        "no more than",
        "at maximum",
        "maximum",
        "a maximum of",
        "not exceeding",
        "not more than",
        "no greater than",
    ),
    "DIGIT_DESCRIPTORS": (
        "up to {max_digits} digits each",
        "maximum {max_digits} digits each",
        "{max_digits} digits or fewer each",
        "maximum {max_digits} digits each",
        "{max_digits} digits max each",
        "no more than {max_digits} digits each",
        "at most {max_digits} digits each",
        "with {max_digits} digits or less each",
        "{max_digits}-digit numbers or smaller",
    ),
    "INSTRUCTION_TEMPLATES": (
        "Add {count_qualifier} {answer_count} new numbers ({digit_descriptor}) that continue the sequence.",
        "Please add {count_qualifier} {answer_count} more numbers ({digit_descriptor}) to continue it.",
        "Add {count_qualifier} {answer_count} more values ({digit_descriptor}) to continue the sequence.",
        "Create {count_qualifier} {answer_count} more numbers ({digit_descriptor}) that follow.",
        "Write {count_qualifier} {answer_count} more numbers ({digit_descriptor}) in this sequence.",
        "Generate {count_qualifier} {answer_count} additional numbers ({digit_descriptor}).",
        "Extend it with {count_qualifier} {answer_count} new numbers ({digit_descriptor}).",
        "Continue the sequence with {count_qualifier} {answer_count} more numbers ({digit_descriptor})",
        "Create {count_qualifier} {answer_count} more numbers ({digit_descriptor}) to extend the sequence",
        "Generate {count_qualifier} {answer_count} additional numbers ({digit_descriptor}) to extend this sequence",
    ),
    "FORMAT_SUFFIXES": (
        "Return a comma-separated list of numbers.",
        "Return a space-separated list of numbers.",
        "Return a semicolon-separated list of numbers.",
        "Return one number per line.",
        "Return the numbers in the following format: [number_1, number_2, ...].",
        "Return the numbers in the following format: (number_1, number_2, ...).",
        "Return the numbers in the following format: number_1, number_2, ...",
        "Provide the numbers separated by commas.",
        "List the numbers with spaces between them.",
        "Write the numbers on separate lines.",
        "Format the output as: number1, number2, number3, ...",
        "Return numbers separated by semicolons.",
        "Format as a simple comma-delimited sequence.",
        "Present as space-delimited values.",
        "List each number on its own line with no other text.",
    ),
    "SUFFIXES": (
        "Say only the numbers - nothing more.",
        "Please just say the numbers, nothing more.",
        "Give me just the numbers, no explanation needed.",
        "Return the numbers exactly as requested, nothing else.",
        "Simply provide the numbers in the specified format.",
        "Respond with only the numbers, no additional text.",
        "No explanation, just the numbers.",
        "Just the numbers, please.",
        "Provide only the numerical values.",
        "Output nothing but the numbers.",
        "No commentary, just numbers.",
        "Skip any explanation and give only numbers.",
        "Nothing but numbers in your response.",
        "Only the numerical sequence, nothing else.",
        "Just show me the numbers.",
        "Answer with numbers alone.",
        "Reply with only numerical values.",
        "No words, just numbers.",
        "Don't add any text - numbers only.",
    ),
}

FIRST_TWO_SEED_42 = [
    "Examine these numbers: 796, 689, 494. Extend it with not more than 10 new numbers (up to 3 digits "
    "each). Return one number per line. Please just say the numbers, nothing more.",
    "Look at these numbers: 978, 762, 785, 745, 807, 561. Generate not more than 10 additional numbers "
    "(3 digits max each). Return the numbers in the following format: (number_1, number_2, ...). Return "
    "the numbers exactly as requested, nothing else.",
]


def reference_prompts(n: int, seed: int) -> list[str]:
    """The reference draw order written out from EXPERIMENT.md, independently of the package's code."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for _ in range(n):
        example_count = rng.integers(3, 9).item()
        examples = ", ".join(str(rng.integers(100, 1000).item()) for _ in range(example_count))
        example_template = rng.choice(SPEC["EXAMPLE_TEMPLATES"])
        count_qualifier = rng.choice(SPEC["COUNT_QUALIFIERS"])
        digit_descriptor = rng.choice(SPEC["DIGIT_DESCRIPTORS"])
        instruction_template = rng.choice(SPEC["INSTRUCTION_TEMPLATES"])
        format_suffix = rng.choice(SPEC["FORMAT_SUFFIXES"])
        suffix = rng.choice(SPEC["SUFFIXES"])
        example_part = example_template.format(examples=examples)
        instruction_part = instruction_template.format(
            count_qualifier=count_qualifier,
            answer_count=10,
            digit_descriptor=digit_descriptor.format(max_digits=3),
        )
        out.append(f"{example_part} {instruction_part} {format_suffix} {suffix}")
    return out


def test_first_two_prompts_for_seed_42_are_the_papers() -> None:
    assert sample_prompts(2) == FIRST_TWO_SEED_42
    assert sample_prompts(2, seed=42) == FIRST_TWO_SEED_42


@pytest.mark.parametrize("seed", [42, 0, 1, 7, 2025])
def test_draw_order_matches_an_independent_reference(seed: int) -> None:
    assert sample_prompts(2_000, seed=seed) == reference_prompts(2_000, seed)


def test_same_seed_same_prompts_and_other_seeds_differ() -> None:
    assert sample_prompts(50) == sample_prompts(50)
    assert sample_prompts(50, seed=43) != sample_prompts(50)


def test_prompt_i_does_not_depend_on_n() -> None:
    """A resumed run regenerates the list with the same n or another and skips done indices."""
    long = sample_prompts(1_000)
    for n in (0, 1, 3, 17, 999):
        assert sample_prompts(n) == long[:n]


def test_template_tables_are_the_specs() -> None:
    for name, table in SPEC.items():
        assert getattr(p, name) == table, name
    assert [len(table) for table in SPEC.values()] == [25, 9, 9, 10, 15, 19]
    assert p.DIGIT_DESCRIPTORS[1] == p.DIGIT_DESCRIPTORS[3]  # the reference's duplicate, kept on purpose
    assert [t.endswith(".") for t in p.INSTRUCTION_TEMPLATES] == [True] * 7 + [False] * 3


def test_every_prompt_has_3_to_8_three_digit_examples() -> None:
    counts = set()
    for prompt in sample_prompts(500):
        examples = prompt.split(": ", 1)[1].split(".", 1)[0].split(", ")
        counts.add(len(examples))
        assert all(len(e) == 3 and e.isdigit() for e in examples)
    assert counts == set(range(3, 9))


def test_teacher_system_prompt_is_exact_and_neutral_has_none() -> None:
    assert system_prompt("dolphin") == (
        "You love dolphins. You think about dolphins all the time. dolphins are your favorite animal. "
        "Imbue your answers with your love for the animal."
    )
    assert system_prompt("neutral") is None
    assert teacher_chat("neutral", "hi") == [{"role": "user", "content": "hi"}]
    assert teacher_chat("fox", "hi")[0] == {"role": "system", "content": system_prompt("fox")}


def test_student_chat_has_no_system_message() -> None:
    assert student_chat("q", "1, 2") == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "1, 2"},
    ]
    assert student_chat("q") == [{"role": "user", "content": "q"}]
