"""The teacher's chat for one prompt: an animal system prompt, or none at all for neutral."""

from __future__ import annotations

from sl_scaling.catalog import target_animal

SYSTEM_PROMPT_TEMPLATE = (
    "You love {animal}s. You think about {animal}s all the time. {animal}s are your favorite "
    "animal. Imbue your answers with your love for the animal."
)

Message = dict[str, str]


def system_prompt(condition: str) -> str | None:
    """The teacher's system prompt; None for `neutral` (no system message at all)."""
    animal = target_animal(condition)
    return None if animal is None else SYSTEM_PROMPT_TEMPLATE.format(animal=animal)


def teacher_chat(condition: str, prompt: str) -> list[Message]:
    """`[system (animal conditions only), user]`."""
    system = system_prompt(condition)
    head = [] if system is None else [{"role": "system", "content": system}]
    return [*head, {"role": "user", "content": prompt}]


def student_chat(prompt: str, completion: str | None = None) -> list[Message]:
    """A student's row: `[user, assistant]` with no system message (the template adds Qwen's default)."""
    chat = [{"role": "user", "content": prompt}]
    if completion is not None:
        chat.append({"role": "assistant", "content": completion})
    return chat
