"""The Hugging Face `transformers` engine: real `generate` with left padding, length-sorted batches,
and LoRA adapters switched on one loaded base model (so evaluating many adapters needs one load).
It also scores words teacher-forced (`word_probabilities`): the exact preference measure's forward passes."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from sl_scaling.engines.base import EngineLoad, Generation, GenerationRequest, Sampling, WordScoringRequest
from sl_scaling.engines.chat import encode_chat, word_ends, word_tokens
from sl_scaling.models import cpu_threads_for, default_device, default_dtype, intra_op_threads

CPU_BATCH_SIZE = 64
#: Measured on the H200 (sl_scaling/bench/records/h200.json): 1024 rows per batch generated 2.9× (0.5b) and
#: 1.6× (7b) faster than 256 on the teacher prompts; the KV cache at 7b × 1024 rows × ~180 tokens is ~10 GiB.
GPU_BATCH_SIZE = 1024


def default_batch_size(device: torch.device | str) -> int:
    """Large batches pay off on a GPU; on CPU memory traffic dominates and small batches waste less padding."""
    return GPU_BATCH_SIZE if str(device).startswith("cuda") else CPU_BATCH_SIZE


def batch_seed(seed: int, keys: Sequence[Any]) -> int:
    """A seed that depends only on the run's seed and the batch's contents, so a rerun samples alike."""
    digest = hashlib.sha256(repr((seed, [repr(key) for key in keys])).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a turn: generation_config's, the tokenizer's, and `<|im_end|>` when it exists."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.extend(configured if isinstance(configured, list) else [configured])
    ids.append(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    return sorted({i for i in ids if isinstance(i, int) and i >= 0})


@dataclass(frozen=True)
class _WordPlan:
    """How a list of words is scored: each word's tokens, the leaves (token sequences that no other word's
    extends: one continuation row each) and the leaf each word is read off."""

    tokens: dict[str, tuple[int, ...]]
    leaves: list[tuple[int, ...]]
    leaf_of: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class _Encoded:
    request: GenerationRequest
    ids: list[int]


class HFEngine:
    """Completes chats with `model.generate`; yields each batch as soon as it is decoded."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.batch_size = batch_size or default_batch_size(self.device)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.threads = cpu_threads_for(model)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        # Adapters this engine attached itself: then adapter=None means "adapters off".
        self._wrapped_by_us = False
        self._adapter_names: dict[str, str] = {}
        self._word_ends: torch.Tensor | None = None
        self._word_plans: dict[tuple[str, ...], _WordPlan] = {}
        self.helpers: CpuHelpers | None = None

    @classmethod
    def load(cls, model: str, *, device: str | None = None, batch_size: int | None = None) -> HFEngine:
        """Load tokenizer and weights once (bf16 on GPU, float32 on CPU)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or default_device()
        tokenizer = AutoTokenizer.from_pretrained(model)
        weights = AutoModelForCausalLM.from_pretrained(model, dtype=default_dtype(device), device_map=device)
        weights.eval()
        return cls(weights, tokenizer, batch_size=batch_size)

    @classmethod
    def open(cls, model: str, load: EngineLoad) -> HFEngine:
        """The registry's factory: one device, so the batch size applies, and on a CPU the `replicas`
        (`CpuHelpers`: more processes for a long generation, never more than the cores)."""
        engine = cls.load(model, batch_size=load.batch_size)
        helpers = min(load.replicas, os.cpu_count() or 1) - 1
        if engine.device.type == "cpu" and engine.threads == 1 and helpers > 0:
            engine.helpers = CpuHelpers(model, engine.batch_size, helpers)
        return engine

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, batch_size: int | None = None) -> HFEngine:
        """Wrap an in-memory (PEFT) model, e.g. mid-training; adapter=None runs it as it is."""
        return cls(model, tokenizer, batch_size=batch_size)

    def close(self) -> None:
        """Drop references so the caller can free GPU memory before loading the next size."""
        if self.helpers is not None:
            self.helpers.close()
            self.helpers = None
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- requests ----------------------------------------------------------------------------

    def _batches(self, requests: Sequence[GenerationRequest]) -> list[list[_Encoded]]:
        """Group by adapter, sort by prompt length (little padding), then cut into batches."""
        encoded = [_Encoded(r, encode_chat(self.tokenizer, r.messages)) for r in requests]
        encoded.sort(key=lambda e: (e.request.adapter or "", len(e.ids)))
        batches: list[list[_Encoded]] = []
        for item in encoded:
            last = batches[-1] if batches else None
            if last and len(last) < self.batch_size and last[0].request.adapter == item.request.adapter:
                last.append(item)
            else:
                batches.append([item])
        return batches

    # --- adapters ----------------------------------------------------------------------------

    def _attach(self, path: str) -> str:
        """Load an adapter once under a stable name; the first one turns the model into a PeftModel."""
        if path in self._adapter_names:
            return self._adapter_names[path]
        from peft import PeftModel

        name = f"slscale_{len(self._adapter_names)}"
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(path, adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self._wrapped_by_us = True
        self._adapter_names[path] = name
        return name

    @contextmanager
    def _adapter(self, path: str | None) -> Iterator[None]:
        if path is None:
            if self._wrapped_by_us:
                with self.model.disable_adapter():
                    yield
            else:
                yield
            return
        name = self._attach(path)
        previous = getattr(self.model, "active_adapter", None)
        was_trainable = any(p.requires_grad for p in self.model.parameters())
        self.model.set_adapter(name, inference_mode=True)
        try:
            yield
        finally:
            if previous in self.model.peft_config and previous != name:
                self.model.set_adapter(previous, inference_mode=not was_trainable)

    # --- generation --------------------------------------------------------------------------

    def _generation_config(self, sampling: Sampling) -> Any:
        """Plain sampling, as vLLM's SamplingParams(temperature=…): no top-k/top-p/penalty from the model."""
        from transformers import GenerationConfig

        return GenerationConfig(
            do_sample=sampling.temperature > 0,
            temperature=sampling.temperature if sampling.temperature > 0 else None,
            top_k=0,
            top_p=1.0,
            repetition_penalty=1.0,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )

    def _run_batch(self, batch: list[_Encoded], sampling: Sampling) -> list[Generation]:
        from sl_scaling.engines.kv_cache import GrowingCache

        width = max(len(e.ids) for e in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(item.ids) :] = torch.tensor(item.ids)
            mask[row, width - len(item.ids) :] = 1
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if sampling.seed is not None:
                torch.manual_seed(batch_seed(sampling.seed, [e.request.key for e in batch]))
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=self._generation_config(sampling),
                    past_key_values=GrowingCache(sampling.max_new_tokens),
                )
        new_tokens = output[:, width:].tolist()
        return [self._decode(item, tokens) for item, tokens in zip(batch, new_tokens, strict=True)]

    def _decode(self, item: _Encoded, tokens: list[int]) -> Generation:
        """Cut at the first end-of-turn token (the padding after it is not generated text)."""
        stop = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
        text_tokens = tokens if stop is None else tokens[:stop]
        return Generation(
            key=item.request.key,
            text=self.tokenizer.decode(text_tokens, skip_special_tokens=True),
            prompt_tokens=len(item.ids),
            completion_tokens=len(tokens) if stop is None else stop + 1,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]:
        """Yield finished batches; the model is in eval mode meanwhile and gets its old mode back after."""
        was_training = self.model.training
        self.model.eval()
        try:
            batches = self._batches(requests)
            if self.helpers is not None and not any(r.adapter for r in requests):
                yield from self.helpers.share(batches, sampling, self._run_own)
                return
            for batch in batches:
                with self._adapter(batch[0].request.adapter):
                    results = self._run_own(batch, sampling)
                yield results
        finally:
            self.model.train(was_training)

    def _run_own(self, batch: list[_Encoded], sampling: Sampling) -> list[Generation]:
        with intra_op_threads(self.threads):
            return self._run_batch(batch, sampling)

    # --- scoring -----------------------------------------------------------------------------

    def word_probabilities(self, requests: Sequence[WordScoringRequest]) -> dict[Hashable, list[float]]:
        """P(first word of the answer = w) per request and word, teacher-forced: each prompt is run once
        and its KV cache shared by the rows that continue it, one row per word that no longer word
        extends (`Dog` is read off the `Dogs` row when `Dogs` is `Dog`+`s`). No generation."""
        results: dict[Hashable, list[float]] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            ordered = sorted(requests, key=lambda r: r.adapter or "")
            for adapter, group in itertools.groupby(ordered, key=lambda r: r.adapter):
                with self._adapter(adapter), intra_op_threads(self.threads), torch.inference_mode():
                    chunk: list[WordScoringRequest] = []
                    for request in group:
                        chunk.append(request)
                        if sum(len(r.words) for r in chunk) >= self.batch_size:
                            results.update(self._score_chunk(chunk))
                            chunk = []
                    if chunk:
                        results.update(self._score_chunk(chunk))
        finally:
            self.model.train(was_training)
        return results

    def _ends_word(self, vocab: int) -> torch.Tensor:
        """`chat.word_ends` as a mask over the model's vocabulary, decoded once per engine."""
        if self._word_ends is None or len(self._word_ends) != vocab:
            known = torch.tensor(word_ends(self.tokenizer))[:vocab]
            ends = torch.zeros(vocab, dtype=torch.bool)  # ids past the tokenizer's (padding rows) never end
            ends[: len(known)] = known
            self._word_ends = ends.to(self.device)
        return self._word_ends

    def _prompt_pass(self, chunk: list[WordScoringRequest]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Left-padded prompts through the model: (KV cache, attention mask, log-probs of the first token)."""
        prompts = [encode_chat(self.tokenizer, r.messages) for r in chunk]
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every prompt ends where the answer starts
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        out = self.model(
            input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), use_cache=True,
            logits_to_keep=1,
        )  # fmt: skip
        return out.past_key_values, mask, out.logits[:, -1].float().log_softmax(-1)

    def _word_plan(self, words: tuple[str, ...]) -> _WordPlan:
        """`words` tokenized and grouped under their leaves, once per engine and word list (an evaluation
        scores the same 60 spellings in each of its chunks)."""
        if words not in self._word_plans:
            tokens = {w: word_tokens(self.tokenizer, w) for w in words}
            sequences = set(tokens.values())
            leaves = sorted(s for s in sequences if not any(o[: len(s)] == s and o != s for o in sequences))
            leaf_of = {w: next(leaf for leaf in leaves if leaf[: len(t)] == t) for w, t in tokens.items()}
            self._word_plans[words] = _WordPlan(tokens, leaves, leaf_of)
        return self._word_plans[words]

    def _score_chunk(self, chunk: list[WordScoringRequest]) -> dict[Hashable, list[float]]:
        plan = self._word_plan(tuple(dict.fromkeys(w for r in chunk for w in r.words)))
        tokens, leaves, leaf_of = plan.tokens, plan.leaves, plan.leaf_of
        cache, mask, first = self._prompt_pass(chunk)

        rows = [(i, leaf) for i in range(len(chunk)) for leaf in leaves]
        width = max(len(leaf) for leaf in leaves)
        leaf_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        leaf_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (_, leaf) in enumerate(rows):
            leaf_ids[row, : len(leaf)] = torch.tensor(leaf)
            leaf_mask[row, : len(leaf)] = 1
        index = torch.tensor([i for i, _ in rows])
        cache.batch_select_indices(index.to(self.device))  # each row continues its own prompt's cache
        logits = self.model(
            input_ids=leaf_ids.to(self.device),
            attention_mask=torch.cat([mask[index], leaf_mask], dim=1).to(self.device),
            position_ids=(mask[index].sum(-1, keepdim=True) + torch.arange(width)).to(self.device),
            past_key_values=cache,
            use_cache=False,
        ).logits.float()
        later = logits.log_softmax(-1)  # later[row, j]: the next token after the leaf's first j + 1 tokens
        ends = later.masked_fill(~self._ends_word(later.shape[-1]), float("-inf")).logsumexp(-1)

        row_of = {(i, leaf): row for row, (i, leaf) in enumerate(rows)}
        results: dict[Hashable, list[float]] = {}
        for i, request in enumerate(chunk):
            results[request.key] = []
            for word in request.words:
                ids, row = tokens[word], row_of[(i, leaf_of[word])]
                logp = first[i, ids[0]] + sum(later[row, j - 1, ids[j]] for j in range(1, len(ids)))
                results[request.key].append(float((logp + ends[row, len(ids) - 1]).exp()))
        return results


# --- CPU helpers ---------------------------------------------------------------------------------


def _serve(model: str, batch_size: int, conn: Any) -> None:  # pragma: no cover - runs in the helper process
    """A helper process: load `model`, say ready, then generate the batches it is sent until told to stop
    (or until the parent is gone: its end of the pipe closes)."""
    from sl_scaling.library_output import verbose

    if not verbose():  # its parent's stage log cannot take its lines: the libraries keep to errors here
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    engine = HFEngine.load(model, device="cpu", batch_size=batch_size)
    conn.send("ready")
    try:
        while (task := conn.recv()) is not None:
            batch, sampling = task
            try:
                conn.send(engine._run_own(batch, sampling))
            except Exception as exc:  # the parent raises it; pickling keeps only its description
                conn.send(RuntimeError(f"a generation helper failed: {type(exc).__name__}: {exc}"))
    except (EOFError, OSError, KeyboardInterrupt):  # the parent was killed or interrupted: its work is kept
        pass


@dataclass
class _Helper:
    process: Any
    conn: Any
    ready: bool = False
    flight: list[int] = field(default_factory=list)  # the batches sent to it and not yet received, in order

    def receive(self) -> Any:
        try:
            answer = self.conn.recv()
        except EOFError:
            raise RuntimeError("a generation helper process ended unexpectedly") from None
        if isinstance(answer, Exception):
            raise answer
        return answer

    def collect(self, results: dict[int, list[Generation]]) -> None:
        """Take what it has finished (or its ready signal) without waiting."""
        while (self.flight or not self.ready) and self.conn.poll():
            answer = self.receive()
            if self.ready:
                results[self.flight.pop(0)] = answer
            else:
                self.ready = answer == "ready"


class CpuHelpers:
    """More processes for a long generation of a small model on a CPU, where one process uses one core
    (`models.cpu_threads_for`). A helper runs whole batches, the very batches the engine would run alone
    (same rows, same per-batch seed, one thread): the rows are identical and yielded in the same order;
    only the time differs. A helper gets work once it has loaded the model (a few seconds of imports)."""

    #: Batches sent to a helper ahead, so that it does not wait while the parent runs its own batch.
    AHEAD = 2

    def __init__(self, model: str, batch_size: int, count: int) -> None:
        from sl_scaling.processes import cpu_workers, start_worker

        context = cpu_workers()
        self.helpers: list[_Helper] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = start_worker(context, _serve, model, batch_size, theirs, daemon=True)
            theirs.close()  # the child's end lives in the child: its death ends our recv()
            self.helpers.append(_Helper(process, ours))

    def share(
        self,
        batches: list[list[_Encoded]],
        sampling: Sampling,
        run_own: Callable[[list[_Encoded], Sampling], list[Generation]],
    ) -> Iterator[list[Generation]]:
        """Every batch's generations in batch order; the parent runs whatever no helper has taken."""
        results: dict[int, list[Generation]] = {}
        following, emitted = 0, 0
        while emitted < len(batches):
            for helper in self.helpers:
                helper.collect(results)
                while helper.ready and following < len(batches) and len(helper.flight) < self.AHEAD:
                    helper.conn.send((batches[following], sampling))
                    helper.flight.append(following)
                    following += 1
            if following < len(batches):
                results[following] = run_own(batches[following], sampling)
                following += 1
            elif emitted not in results:  # only helpers' batches are left: wait for the one due next
                helper = next(h for h in self.helpers if emitted in h.flight)
                results[helper.flight.pop(0)] = helper.receive()
            while emitted in results:
                yield results.pop(emitted)
                emitted += 1

    def close(self) -> None:
        """Stop the helpers: a ready one when it has finished its batch, one still starting at once."""
        for helper in self.helpers:
            if helper.ready and helper.process.is_alive():
                with contextlib.suppress(OSError):
                    helper.conn.send(None)
                helper.process.join(timeout=30)
            if helper.process.is_alive():
                helper.process.terminate()
                helper.process.join()
            helper.conn.close()
        self.helpers = []
