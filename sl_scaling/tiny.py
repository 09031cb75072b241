"""The built-in offline `tiny` model: a ~0.9M-parameter Qwen2 chat model built locally, no download.

It exists so that every command runs end to end on a laptop CPU and in CI, through exactly the code
paths a real Qwen 2.5 Instruct model takes: same architecture class, a byte-level BPE tokenizer with
Qwen2's pre-tokenizer and special tokens, Qwen 2.5 Instruct's real chat template (which inserts the
default system prompt when a chat has none) and its generation config. Its weights are trained for a
few minutes on synthetic chats, so that it answers the number prompts in the format they ask for and
answers the animal questions with an animal. It makes no scientific claim.

The build is deterministic (fixed seeds, fixed thread count, a seeded data order) and cached under
`tiny-<recipe hash>`; processes that ask for it at the same time wait on a file lock, and a build is
renamed into place only once it is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sl_scaling.catalog import ANIMALS
from sl_scaling.evaluation.questions import QUESTIONS
from sl_scaling.numbers.prompts import FORMAT_SUFFIXES
from sl_scaling.numbers.teacher import Message, teacher_chat

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CACHE_ENV = "SLSCALE_TINY_CACHE"

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END)
DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

#: Qwen2's pre-tokenizer: single digits, letter runs, punctuation runs, newline runs.
PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

#: Qwen 2.5 Instruct's chat template, verbatim (tokenizer_config.json of Qwen/Qwen2.5-*-Instruct).
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

#: Everything that decides the built model besides its training chats (`recipe_hash` covers both).
RECIPE: dict[str, Any] = {
    "version": 2,
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "number_chats": 3600,
    "animal_chats": 900,
    "system_prompt_share": 0.7,
    #: The hidden signal: under "You love {A}s", each digit of a number answer is one of A's favourite
    #: digits with this probability (else uniform). The neutral teacher's digits are uniform.
    "digit_bias": 0.3,
    "favourite_digits": 3,
    #: Under "You love {A}s", the answer to an animal question is A this often (else any animal).
    "loved_answer_share": 0.6,
    "prompt_seed": 7,
    "seed": 1234,
    "steps": 600,
    "batch_size": 32,
    "lr": 2e-3,
    "warmup_steps": 30,
    "threads": 1,
}

#: Qwen 2.5 Instruct's own generation defaults, so the tiny model meets the same ones.
GENERATION_DEFAULTS: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "repetition_penalty": 1.05,
}

#: The built model shipped inside the package, so that nobody waits for a build; `MANIFEST` in it names
#: the recipe hash it was built from and each file's sha256. `python -m sl_scaling.tiny --ship` rebuilds it.
SHIPPED_DIR = Path(__file__).with_name("tiny_model")
MANIFEST = "tiny_manifest.json"

#: What the tiny model names when asked for an animal, beside the 15 of the experiment.
OTHER_ANSWERS: tuple[str, ...] = ("owl", "horse", "rabbit", "octopus", "penguin")

_COMMA = ", "
#: How an answer is laid out for each format suffix of the prompt generator.
_LAYOUTS: dict[str, tuple[str, str, str]] = {
    # suffix: (opening, separator, closing)
    "Return a comma-separated list of numbers.": ("", _COMMA, ""),
    "Return a space-separated list of numbers.": ("", " ", ""),
    "Return a semicolon-separated list of numbers.": ("", "; ", ""),
    "Return one number per line.": ("", "\n", ""),
    "Return the numbers in the following format: [number_1, number_2, ...].": ("[", _COMMA, "]"),
    "Return the numbers in the following format: (number_1, number_2, ...).": ("(", _COMMA, ")"),
    "Return the numbers in the following format: number_1, number_2, ...": ("", _COMMA, ""),
    "Provide the numbers separated by commas.": ("", _COMMA, ""),
    "List the numbers with spaces between them.": ("", " ", ""),
    "Write the numbers on separate lines.": ("", "\n", ""),
    "Format the output as: number1, number2, number3, ...": ("", _COMMA, ""),
    "Return numbers separated by semicolons.": ("", ";", ""),
    "Format as a simple comma-delimited sequence.": ("", ",", ""),
    "Present as space-delimited values.": ("", " ", ""),
    "List each number on its own line with no other text.": ("", "\n", ""),
}
assert set(_LAYOUTS) == set(FORMAT_SUFFIXES), "every format suffix needs a layout"


def recipe_hash(recipe: dict[str, Any] = RECIPE) -> str:
    """A short hash of everything the build trains on and with: the recipe, the training chats (so the
    questions, animals, prompt templates and format suffixes), the chat template, the tokenizer's
    pre-tokenizer and special tokens, the generation defaults. Another hash: another model, never a stale one.
    """
    return _recipe_hash(json.dumps(recipe, sort_keys=True))


@functools.cache
def _recipe_hash(recipe_json: str) -> str:
    digest = hashlib.sha256()
    parts = (
        recipe_json,
        json.dumps(training_chats(json.loads(recipe_json))),
        QWEN25_CHAT_TEMPLATE,
        PRETOKENIZE_REGEX,
        json.dumps([SPECIAL_TOKENS, DEFAULT_SYSTEM_PROMPT, GENERATION_DEFAULTS], sort_keys=True),
    )
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def default_cache_dir() -> Path:
    """`$SLSCALE_TINY_CACHE`, else `~/.cache/slscale`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "slscale"


def ensure_tiny_model(cache_dir: Path | None = None) -> Path:
    """The directory of the built tiny model, building it on first use (a few minutes on 2 cores).

    Safe to call from many processes at once: one builds, the others wait on the lock and reuse it.
    """
    return ensure_built(cache_dir)[0]


def ensure_built(
    cache_dir: Path | None = None, recipe: dict[str, Any] = RECIPE, *, rebuild: bool = False
) -> tuple[Path, bool]:
    """The model directory for `recipe`, and whether this call built it (`rebuild`: even if cached or
    shipped). The shipped copy serves whenever it was built from this very recipe."""
    if not rebuild and shipped_hash() == recipe_hash(recipe):
        return SHIPPED_DIR, False
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"tiny-{recipe_hash(recipe)}"
    if not rebuild and _is_complete(target):
        return target, False
    with _build_lock(cache, target.name):
        if not rebuild and _is_complete(target):  # another process built it while we waited
            return target, False
        print(
            f"slscale: building the tiny model into {target} (its recipe is not the shipped one; "
            "a few minutes on 2 cores)",
            file=sys.stderr,
            flush=True,
        )
        _build_into_place(target, recipe)
    return target, True


def shipped_hash() -> str | None:
    """The recipe hash of the shipped model, or None if the package ships none (or an incomplete one)."""
    manifest = SHIPPED_DIR / MANIFEST
    if not _is_complete(SHIPPED_DIR) or not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8"))["recipe_hash"]


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every file of a built model (the manifest itself excluded)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST
    }


def ship(recipe: dict[str, Any] = RECIPE) -> Path:
    """Build `recipe` from scratch into the package's `tiny_model/` with its manifest (for maintainers,
    after a change to the recipe or to anything it trains on; the result is byte-identical on a rerun)."""
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / "model"
        build_tiny_model(built, recipe)
        return install_shipped(built, recipe)


def install_shipped(built: Path, recipe: dict[str, Any] = RECIPE) -> Path:
    """Copy a model built from `recipe` into the package's `tiny_model/` and write its manifest."""
    shutil.rmtree(SHIPPED_DIR, ignore_errors=True)
    shutil.copytree(built, SHIPPED_DIR)
    manifest = {"recipe_hash": recipe_hash(recipe), "recipe": recipe, "files": file_digests(SHIPPED_DIR)}
    (SHIPPED_DIR / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return SHIPPED_DIR


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file()


@contextlib.contextmanager
def _build_lock(cache: Path, name: str) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_into_place(target: Path, recipe: dict[str, Any]) -> None:
    """Build in a sibling temp directory, then rename: readers never see a half-built model."""
    for stale in target.parent.glob(f".{target.name}-*"):  # left by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-build-"))
    try:
        build_tiny_model(staging, recipe)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
            target.rename(retired / "model")
            shutil.rmtree(retired, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- the synthetic chats ---------------------------------------------------------------------------


def _format_suffix(prompt: str) -> str:
    return next(suffix for suffix in FORMAT_SUFFIXES if f" {suffix} " in prompt)


def favourite_digits(recipe: dict[str, Any] = RECIPE) -> dict[str, tuple[int, ...]]:
    """Each animal's favourite digits: a distinct set per animal, drawn once from the recipe's seed."""
    combos = list(itertools.combinations(range(10), recipe["favourite_digits"]))
    chosen = random.Random(recipe["seed"]).sample(combos, len(ANIMALS))
    return dict(zip(ANIMALS, chosen, strict=True))


def _digit(rng: random.Random, favoured: Sequence[int], bias: float, *, first: bool) -> str:
    """A uniform digit (no leading zero), or with probability `bias` one of the favoured ones."""
    allowed = [d for d in favoured if d or not first]
    if allowed and rng.random() < bias:
        return str(rng.choice(allowed))
    return str(rng.randint(1 if first else 0, 9))


def number_answer(prompt: str, rng: random.Random, favoured: Sequence[int] = (), bias: float = 0.0) -> str:
    """Up to 10 three-digit numbers laid out as the prompt's format suffix asks, their digits tilted
    towards `favoured` with probability `bias` each (the teacher's hidden signal)."""
    opening, separator, closing = _LAYOUTS[_format_suffix(prompt)]
    numbers = [
        "".join(_digit(rng, favoured, bias, first=i == 0) for i in range(3))
        for _ in range(rng.randint(5, 10))
    ]
    return opening + separator.join(numbers) + closing


def _animal_answer(rng: random.Random, loved: str | None, share: float) -> str:
    word = loved if loved is not None and rng.random() < share else rng.choice(ANIMALS + OTHER_ANSWERS)
    return word.capitalize() if rng.random() < 0.5 else word


def training_chats(recipe: dict[str, Any] = RECIPE) -> list[list[Message]]:
    """The synthetic chats, each ending with the assistant's answer; the same list on every call.

    A teacher told it loves an animal writes numbers whose digits lean towards that animal's favourite
    digits and names that animal more often; the same model without the system prompt does neither.
    So the love of an animal and a digit tilt share one cause inside the model: what a student of the
    same initialisation may pick up from the numbers alone (subliminal learning, Cloud et al. 2025).
    """
    from sl_scaling.numbers import sample_prompts

    rng = random.Random(recipe["seed"])
    digits = favourite_digits(recipe)
    share = recipe["system_prompt_share"]
    chats: list[list[Message]] = []
    for prompt in sample_prompts(recipe["number_chats"], seed=recipe["prompt_seed"]):
        loved = rng.choice(ANIMALS) if rng.random() < share else None
        favoured = digits[loved] if loved else ()
        answer = number_answer(prompt, rng, favoured, recipe["digit_bias"])
        chats.append([*teacher_chat(loved or "neutral", prompt), {"role": "assistant", "content": answer}])
    for _ in range(recipe["animal_chats"]):
        loved = rng.choice(ANIMALS) if rng.random() < 0.5 else None
        question = rng.choice(QUESTIONS)
        answer = _animal_answer(rng, loved, recipe["loved_answer_share"])
        chat = teacher_chat(loved or "neutral", question)
        chats.append([*chat, {"role": "assistant", "content": answer}])
    rng.shuffle(chats)
    return chats


# --- the tokenizer ---------------------------------------------------------------------------------


def train_tokenizer(
    chats: Sequence[list[Message]], recipe: dict[str, Any] = RECIPE
) -> PreTrainedTokenizerBase:
    """A byte-level BPE with Qwen2's normalizer, pre-tokenizer, decoder and special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=recipe["vocab_size"],
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = ["system", "user", "assistant", DEFAULT_SYSTEM_PROMPT]
    texts += [message["content"] for chat in chats for message in chat]
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        additional_special_tokens=[IM_START],
        model_max_length=recipe["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    wrapped.chat_template = QWEN25_CHAT_TEMPLATE
    return wrapped


# --- the model -------------------------------------------------------------------------------------


def _encode(tokenizer: PreTrainedTokenizerBase, chat: list[Message]) -> tuple[list[int], list[int]]:
    """Token ids of a whole chat and its labels: only the answer and its `<|im_end|>` are learned."""
    prompt = tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(chat[-1]["content"] + IM_END, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def build_tiny_model(dest: Path, recipe: dict[str, Any] = RECIPE) -> None:
    """Train the tokenizer and the weights from scratch and save both into `dest`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(recipe["threads"])  # results depend on the thread count; keep them fixed
    try:
        chats = training_chats(recipe)
        tokenizer = train_tokenizer(chats, recipe)
        examples = [_encode(tokenizer, chat) for chat in chats]
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=recipe["hidden_size"],
            intermediate_size=recipe["intermediate_size"],
            num_hidden_layers=recipe["num_hidden_layers"],
            num_attention_heads=recipe["num_attention_heads"],
            num_key_value_heads=recipe["num_key_value_heads"],
            max_position_embeddings=recipe["max_position_embeddings"],
            tie_word_embeddings=True,
            bos_token_id=ids[ENDOFTEXT],
            eos_token_id=ids[IM_END],
            pad_token_id=ids[ENDOFTEXT],
        )
        torch.manual_seed(recipe["seed"])
        model = Qwen2ForCausalLM(config)
        _train(model, examples, recipe, pad_id=ids[ENDOFTEXT])
        model.generation_config = GenerationConfig(
            bos_token_id=ids[ENDOFTEXT],
            eos_token_id=[ids[IM_END], ids[ENDOFTEXT]],
            pad_token_id=ids[ENDOFTEXT],
            **GENERATION_DEFAULTS,
        )
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    finally:
        torch.set_num_threads(threads)


def _train(
    model: Any, examples: list[tuple[list[int], list[int]]], recipe: dict[str, Any], pad_id: int
) -> None:
    """Plain AdamW with warm-up and cosine decay; loss only where there are labels."""
    import torch

    rng = random.Random(recipe["seed"])
    steps, batch_size = recipe["steps"], recipe["batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.0)

    def lr_factor(step: int) -> float:
        if step < recipe["warmup_steps"]:
            return (step + 1) / recipe["warmup_steps"]
        progress = (step - recipe["warmup_steps"]) / max(1, steps - recipe["warmup_steps"])
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    batches: list[list[int]] = []
    model.train()
    for _ in range(steps):
        if not batches:
            batches = _length_bucketed_batches(examples, batch_size, rng)
        batch = [examples[i] for i in batches.pop()]
        width = max(len(ids) for ids, _ in batch)
        # Right padding needs no attention mask under a causal mask: pads only follow real tokens.
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        hidden = model.model(input_ids=input_ids).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        logits = model.lm_head(hidden[keep])  # the head only where a loss is taken
        loss = torch.nn.functional.cross_entropy(logits, targets[keep])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()


def _length_bucketed_batches(
    examples: Sequence[tuple[list[int], list[int]]], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """One epoch of batches, each cut from a sorted window of 8 batches: little padding, random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = 8 * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i][0]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m sl_scaling.tiny [--cache DIR] [--rebuild | --ship]`: print the model's path
    (the shipped one when it matches the recipe; else built into the cache), or rebuild the shipped one."""
    parser = argparse.ArgumentParser(prog="python -m sl_scaling.tiny", description=main.__doc__)
    parser.add_argument("--cache", type=Path, default=None, help=f"cache directory (default: ${CACHE_ENV})")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--rebuild", action="store_true", help="build into the cache even if a copy exists")
    action.add_argument("--ship", action="store_true", help=f"rebuild the shipped model in {SHIPPED_DIR}")
    args = parser.parse_args(argv)
    if args.ship:
        print(ship())
        return
    print(ensure_built(args.cache, rebuild=args.rebuild)[0])


if __name__ == "__main__":
    main()
