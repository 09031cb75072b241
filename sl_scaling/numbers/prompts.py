"""The user prompts of Phase 1, reproducing the reference generator draw for draw."""

from __future__ import annotations

import numpy as np

EXAMPLE_TEMPLATES: tuple[str, ...] = (
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
)

COUNT_QUALIFIERS: tuple[str, ...] = (
    "at most",
    "up to",
    "no more than",
    "at maximum",
    "maximum",
    "a maximum of",
    "not exceeding",
    "not more than",
    "no greater than",
)

#: The second and fourth entries are identical on purpose (the reference has both).
DIGIT_DESCRIPTORS: tuple[str, ...] = (
    "up to {max_digits} digits each",
    "maximum {max_digits} digits each",
    "{max_digits} digits or fewer each",
    "maximum {max_digits} digits each",
    "{max_digits} digits max each",
    "no more than {max_digits} digits each",
    "at most {max_digits} digits each",
    "with {max_digits} digits or less each",
    "{max_digits}-digit numbers or smaller",
)

#: The last three have no final period, as in the reference.
INSTRUCTION_TEMPLATES: tuple[str, ...] = (
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
)

FORMAT_SUFFIXES: tuple[str, ...] = (
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
)

SUFFIXES: tuple[str, ...] = (
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
)

EXAMPLE_MIN_COUNT = 3
EXAMPLE_MAX_COUNT = 8
EXAMPLE_MIN_VALUE = 100
EXAMPLE_MAX_VALUE = 1000  # exclusive, as numpy's `integers`
ANSWER_COUNT = 10
ANSWER_MAX_DIGITS = 3
PROMPT_SEED = 42


def _one_prompt(rng: np.random.Generator) -> str:
    example_count = rng.integers(EXAMPLE_MIN_COUNT, EXAMPLE_MAX_COUNT + 1).item()
    examples = ", ".join(
        str(rng.integers(EXAMPLE_MIN_VALUE, EXAMPLE_MAX_VALUE).item()) for _ in range(example_count)
    )
    example_template = rng.choice(EXAMPLE_TEMPLATES)
    count_qualifier = rng.choice(COUNT_QUALIFIERS)
    digit_descriptor = rng.choice(DIGIT_DESCRIPTORS).format(max_digits=ANSWER_MAX_DIGITS)
    instruction_template = rng.choice(INSTRUCTION_TEMPLATES)
    format_suffix = rng.choice(FORMAT_SUFFIXES)
    suffix = rng.choice(SUFFIXES)
    example_part = example_template.format(examples=examples)
    instruction_part = instruction_template.format(
        count_qualifier=count_qualifier,
        answer_count=ANSWER_COUNT,
        digit_descriptor=digit_descriptor,
    )
    return f"{example_part} {instruction_part} {format_suffix} {suffix}"


def sample_prompts(n: int, seed: int = PROMPT_SEED) -> list[str]:
    """The first `n` prompts of the reference generator seeded with `seed`.

    Prompt `i` is the same for every `n > i`, so a resumed run can regenerate the list and skip
    the indices it already has.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    return [_one_prompt(rng) for _ in range(n)]
