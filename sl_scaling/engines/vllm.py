"""The vLLM engine: one `vllm.LLM` per size, serving the base model and every LoRA adapter.

vLLM is imported only inside `VLLMEngine.load`, so CPU installs never touch it. Only its stable API is
used (`LLM`, `SamplingParams`, `LoRARequest`): the code runs on 0.24.0 (the release built for the lent
H200's torch) and on the current release the `gpu` extra installs. Everything before the GPU call (the
`LLM` arguments, prompt encoding, sampling parameters, LoRA request ids, chunking) is a pure helper
here and is unit-tested on CPU.

Speed choices, measured in benchmarks/README.md: LoRA is enabled only when adapters will be served
(teacher generation needs none, and enabled LoRA costs time on every step); texts are decoded here in
one batch call, not token by token inside vLLM's front end; CUDA graphs are captured up to the full
batch; small models can run as several engine processes sharing the GPU (`replicas`), because at
0.5b vLLM's CPU side, not the GPU, sets the pace.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sl_scaling.engines.base import EngineLoad, Generation, GenerationRequest, Sampling, WordScoringRequest
from sl_scaling.engines.chat import encode_chat, word_ends, word_tokens
from sl_scaling.errors import OptionalDependencyError

#: Requests handed to vLLM per call: its scheduler batches inside; we only need durable checkpoints.
DEFAULT_CHUNK = 4096
MAX_LORA_RANK = 8  # EXPERIMENT.md: r 8
#: Adapters served in one batch: a size's 16 conditions (evaluated together in one call).
MAX_LORAS = 16
MAX_MODEL_LEN = 2048
#: Running sequences per step: vLLM's own default on an H100/H200, stated so every vLLM version agrees.
MAX_NUM_SEQS = 1024


@dataclass(frozen=True)
class VLLMOptions:
    """How the `LLM` is built. `lora=False` when no request will name an adapter (teacher generation)."""

    lora: bool = True
    max_loras: int = MAX_LORAS
    max_num_seqs: int = MAX_NUM_SEQS
    max_model_len: int = MAX_MODEL_LEN
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    #: Engine processes sharing the GPU, each with its share of memory (data parallel on one GPU).
    replicas: int = 1
    #: No torch.compile and no CUDA graphs: starts in seconds, runs slower (tests).
    enforce_eager: bool = False
    #: "dummy": random weights from the config alone (the bench's real-shape models; nothing to load).
    load_format: str = "auto"
    #: "auto" (the checkpoint's: bf16 for Qwen2.5); "float16" where a test needs more mantissa.
    dtype: str = "auto"


def llm_kwargs(model: str, options: VLLMOptions) -> dict[str, Any]:
    """Arguments of `vllm.LLM` for one engine process (a replica gets its share of the GPU's memory)."""
    kwargs: dict[str, Any] = {
        "model": model,
        "max_model_len": options.max_model_len,
        "max_num_seqs": options.max_num_seqs,
        "gpu_memory_utilization": round(options.gpu_memory_utilization / options.replicas, 4),
        "generation_config": "vllm",  # ignore generation_config.json's sampling defaults (Qwen: top_p 0.8)
        "load_format": options.load_format,
        "dtype": options.dtype,
        "enforce_eager": options.enforce_eager,
        **parallel_kwargs(options.tensor_parallel_size),
    }
    if options.lora:
        kwargs.update(enable_lora=True, max_lora_rank=MAX_LORA_RANK, max_loras=options.max_loras)
    if not options.enforce_eager:
        # vLLM captures graphs up to min(2 × max_num_seqs, 512) rows by default; a full step of
        # max_num_seqs rows would then launch every kernel from Python.
        kwargs["compilation_config"] = {"max_cudagraph_capture_size": options.max_num_seqs}
    return kwargs


#: Next-token log-probabilities vLLM returns after a scored word (its default cap). The mass of the
#: word-ending tokens among them is a lower bound of the exact one, short only by improbable ending tokens
#: (the likely ones — end of turn, `.`, newline — are always among the top 20).
WORD_END_TOP_K = 20


def request_seed(seed: int, key: Hashable) -> int:
    """A per-request seed: a row samples the same text whichever chunk or order it is generated in."""
    digest = hashlib.sha256(repr((seed, repr(key))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & (2**31 - 1)


def sampling_kwargs(sampling: Sampling, key: Hashable) -> dict[str, Any]:
    """`SamplingParams` arguments: temperature and a token cap, as the reference (no top-k/top-p).

    Token ids only (`detokenize=False`): `VLLMEngine` decodes the finished rows in one batch call."""
    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_new_tokens,
        "top_p": 1.0,  # pure temperature sampling: never the model's recommended top-p/top-k/penalty
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "detokenize": False,
    }
    if sampling.seed is not None:
        kwargs["seed"] = request_seed(sampling.seed, key)
    return kwargs


@dataclass
class LoraRegistry:
    """Stable LoRA ids (1, 2, …) per adapter path, so vLLM loads each adapter once and caches it."""

    ids: dict[str, int] = field(default_factory=dict)

    def request_kwargs(self, path: str | None) -> dict[str, Any] | None:
        """`LoRARequest` arguments for an adapter, or None for the base model."""
        if path is None:
            return None
        lora_id = self.ids.setdefault(path, len(self.ids) + 1)
        return {"lora_name": f"adapter-{lora_id}", "lora_int_id": lora_id, "lora_path": path}


def chunks(requests: Sequence[GenerationRequest], size: int) -> list[list[GenerationRequest]]:
    """Cut requests into checkpoints, grouped by adapter so a chunk rarely swaps adapters."""
    ordered = sorted(requests, key=lambda r: r.adapter or "")
    return [list(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def parallel_kwargs(tensor_parallel_size: int) -> dict[str, Any]:
    """`LLM` arguments to shard over GPUs of this machine. Multiprocessing, not vLLM's Ray backend:
    inside a Ray task (slscale run --executor ray) vLLM's Ray workers lose the task's placement."""
    if tensor_parallel_size <= 1:
        return {}
    return {"tensor_parallel_size": tensor_parallel_size, "distributed_executor_backend": "mp"}


@dataclass(frozen=True)
class PreparedChunk:
    """Everything `LLM.generate` receives for one chunk, as plain data (built and tested without vLLM)."""

    requests: list[GenerationRequest]
    prompt_ids: list[list[int]]
    params: list[dict[str, Any]]
    loras: list[dict[str, Any] | None]

    def split(self, parts: int) -> list[PreparedChunk]:
        """Contiguous slices, one per engine process (fewer when the chunk is small)."""
        step = -(-len(self.requests) // max(1, parts))
        return [
            PreparedChunk(
                self.requests[i : i + step],
                self.prompt_ids[i : i + step],
                self.params[i : i + step],
                self.loras[i : i + step],
            )
            for i in range(0, len(self.requests), step)
        ]


def prepare_chunk(
    chunk: list[GenerationRequest], sampling: Sampling, tokenizer: Any, loras: LoraRegistry
) -> PreparedChunk:
    return PreparedChunk(
        requests=chunk,
        prompt_ids=[encode_chat(tokenizer, r.messages) for r in chunk],
        params=[sampling_kwargs(sampling, r.key) for r in chunk],
        loras=[loras.request_kwargs(r.adapter) for r in chunk],
    )


def to_generations(
    chunk: PreparedChunk, completions: Sequence[Sequence[int]], tokenizer: Any
) -> list[Generation]:
    """Completion token ids → Generations; the text stops before the end-of-turn token (special)."""
    texts = tokenizer.batch_decode([list(ids) for ids in completions], skip_special_tokens=True)
    return [
        Generation(key=request.key, text=text, prompt_tokens=len(prompt), completion_tokens=len(completion))
        for request, prompt, completion, text in zip(
            chunk.requests, chunk.prompt_ids, completions, texts, strict=True
        )
    ]


def run_chunk(llm: Any, chunk: PreparedChunk) -> list[list[int]]:
    """One `LLM.generate` call; the completion token ids of each request, in request order."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in chunk.prompt_ids],
        [SamplingParams(**params) for params in chunk.params],
        use_tqdm=False,
        lora_request=[None if lora is None else LoRARequest(**lora) for lora in chunk.loras],
    )
    return [list(output.outputs[0].token_ids) for output in outputs]


def _new_llm(model: str, options: VLLMOptions) -> Any:
    # vLLM forks its engine process unless told otherwise; a fork after this process touched CUDA
    # (slscale checks for a GPU before choosing the engine) fails with "Cannot re-initialize CUDA in
    # forked subprocess" (seen on the H200 with 0.24.0).
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    try:
        import vllm
    except ImportError:
        raise OptionalDependencyError("vllm") from None
    return vllm.LLM(**llm_kwargs(model, options))


def _shutdown(llm: Any) -> None:
    """Stop vLLM's engine process now, so the next size finds the GPU's memory free."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


class _Runner(Protocol):
    def run(self, chunk: PreparedChunk) -> list[list[int]]: ...

    def close(self) -> None: ...


class _InProcess:
    """One `LLM` in this process."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def run(self, chunk: PreparedChunk) -> list[list[int]]:
        return run_chunk(self.llm, chunk)

    def close(self) -> None:
        _shutdown(self.llm)
        self.llm = None


def _serve(model: str, options: VLLMOptions, conn: Any) -> None:
    """A replica process: build the `LLM`, say ready, then answer chunks until told to stop."""
    llm = _new_llm(model, options)
    conn.send("ready")
    while (chunk := conn.recv()) is not None:
        conn.send(run_chunk(llm, chunk))
    _shutdown(llm)


class _Replicas:
    """Several `LLM` processes on one GPU, each taking a slice of every chunk.

    They start one after another: each sizes its KV cache from the memory left free when it starts."""

    def __init__(self, model: str, options: VLLMOptions) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.workers: list[tuple[Any, Any]] = []
        try:
            for _ in range(options.replicas):
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(model, options, theirs), daemon=False)
                process.start()
                theirs.close()  # the child's end lives in the child: its death ends our recv()
                self.workers.append((process, ours))
                if ours.recv() != "ready":
                    raise RuntimeError("a vLLM replica failed to start")
        except EOFError:
            self.close()
            raise RuntimeError("a vLLM replica failed to start (its error is printed above)") from None
        except BaseException:
            self.close()
            raise

    def run(self, chunk: PreparedChunk) -> list[list[int]]:
        parts = chunk.split(len(self.workers))
        for part, (_, conn) in zip(parts, self.workers, strict=False):
            conn.send(part)
        return [ids for _, (_, conn) in zip(parts, self.workers, strict=False) for ids in conn.recv()]

    def close(self) -> None:
        for process, conn in self.workers:
            if process.is_alive():
                with contextlib.suppress(OSError):
                    conn.send(None)
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
        self.workers = []


@dataclass(frozen=True)
class ScoredWord:
    """One word of a scoring request as vLLM receives it: the chat, then the word's tokens."""

    request: WordScoringRequest
    prompt_ids: list[int]
    start: int  # where the word's tokens begin in `prompt_ids`


def scored_words(requests: Sequence[WordScoringRequest], tokenizer: Any) -> list[ScoredWord]:
    items = []
    for request in requests:
        chat = encode_chat(tokenizer, request.messages)
        items += [
            ScoredWord(request, chat + list(word_tokens(tokenizer, w)), len(chat)) for w in request.words
        ]
    return items


def word_probability(item: ScoredWord, output: Any, ends: Sequence[bool]) -> float:
    """P(the word's tokens) from the prompt log-probabilities, × P(a word-ending next token) from the
    top-k log-probabilities of the one generated position."""
    logp = sum(
        output.prompt_logprobs[i][item.prompt_ids[i]].logprob for i in range(item.start, len(item.prompt_ids))
    )
    following = output.outputs[0].logprobs[0]
    end_mass = sum(
        math.exp(entry.logprob) for token, entry in following.items() if token < len(ends) and ends[token]
    )
    return math.exp(logp) * end_mass


class VLLMEngine:
    """Completes chats with `vllm.LLM.generate`; yields after each chunk so callers can write it."""

    name = "vllm"

    def __init__(self, runner: _Runner, tokenizer: Any, *, batch_size: int | None = None) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.chunk_size = batch_size or DEFAULT_CHUNK
        self.loras = LoraRegistry()

    @classmethod
    def open(cls, model: str, load: EngineLoad) -> VLLMEngine:
        """The registry's factory."""
        options = VLLMOptions(
            lora=load.adapters,
            tensor_parallel_size=load.tensor_parallel_size,
            enforce_eager=load.eager,
            replicas=load.replicas,
        )
        return cls.load(model, options, batch_size=load.batch_size)

    @classmethod
    def load(
        cls, model: str, options: VLLMOptions | None = None, *, batch_size: int | None = None
    ) -> VLLMEngine:
        """Start vLLM on `model` (one process, or `options.replicas` of them sharing the GPU).

        The tokenizer is transformers' own, not vLLM's wrapper (whose type differs between releases)."""
        from transformers import AutoTokenizer

        options = options or VLLMOptions()
        if options.replicas > 1:
            try:
                import vllm  # noqa: F401 - fail here, in one line, rather than in a replica
            except ImportError:
                raise OptionalDependencyError("vllm") from None
            runner: _Runner = _Replicas(model, options)
        else:
            runner = _InProcess(_new_llm(model, options))
        return cls(runner, AutoTokenizer.from_pretrained(model), batch_size=batch_size)

    @property
    def llm(self) -> Any:
        """The `vllm.LLM` of a one-process engine (evaluation always runs one; calls needing more than
        token ids, such as log-probabilities, go through it)."""
        if not isinstance(self.runner, _InProcess):
            raise RuntimeError("this vLLM engine runs several processes; it has no single LLM")
        return self.runner.llm

    def close(self) -> None:
        self.runner.close()

    def word_probabilities(self, requests: Sequence[WordScoringRequest]) -> dict[Hashable, list[float]]:
        """P(first word = w) per request and word, from prompt log-probabilities of `chat + w`; the
        word-ending mass comes from the top WORD_END_TOP_K. Each `chat + w` is a full prefill: vLLM 0.24
        skips reading its prefix cache for requests that ask for prompt log-probabilities."""
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        ends = word_ends(self.tokenizer)
        items = scored_words(requests, self.tokenizer)
        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, logprobs=WORD_END_TOP_K)
        loras = [self.loras.request_kwargs(item.request.adapter) for item in items]
        outputs = self.llm.generate(
            [{"prompt_token_ids": item.prompt_ids} for item in items],
            params,
            use_tqdm=False,
            lora_request=[None if lora is None else LoRARequest(**lora) for lora in loras],
        )
        results: dict[Hashable, list[float]] = {r.key: [] for r in requests}
        for item, output in zip(items, outputs, strict=True):
            results[item.request.key].append(word_probability(item, output, ends))
        return results

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]:
        for chunk in chunks(requests, self.chunk_size):
            prepared = prepare_chunk(chunk, sampling, self.tokenizer, self.loras)
            yield to_generations(prepared, self.runner.run(prepared), self.tokenizer)
