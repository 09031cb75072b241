"""Phase 1's pure parts: prompts, teacher chats, the reject-reason filter. No torch here."""

from sl_scaling.numbers.filtering import REASONS, parse_numbers, reject_reasons, subsample
from sl_scaling.numbers.prompts import sample_prompts
from sl_scaling.numbers.teacher import student_chat, system_prompt, teacher_chat

__all__ = [
    "REASONS",
    "parse_numbers",
    "reject_reasons",
    "sample_prompts",
    "student_chat",
    "subsample",
    "system_prompt",
    "teacher_chat",
]
