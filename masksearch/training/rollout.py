"""Multi-turn search rollouts for RL: the policy writes `<think>`/`<search>`, our retriever answers
with an `<information>` tool turn, and so on until `<answer>` — under the student-agent rules the
graph and eval use (invalid action → corrective message, forced answer at the turn limit).

The completion is built token by token as it happens: generated tokens get `env_mask` 1 (the
policy's own EOS included), the tool turn and chat-template glue the environment inserts get 0 —
so retrieved text never enters the policy loss and nothing is re-tokenised. Every episode that
ends (answered, or out of turns) ends on EOS, so TRL's overlong filtering
(`mask_truncated_completions`) drops only episodes cut by the token budget.

`SearchRollout` is a TRL `rollout_func` (`rollout(prompts, trainer) -> {prompt_ids,
completion_ids, logprobs, env_mask, trajectory, …}`). Generation: the trainer's vLLM engine when
`use_vllm` (colocate or server mode, through TRL's `VLLMGeneration`), else the policy written to
GGUF and decoded on llama.cpp when a `policy_generator` is given (CPU training,
`training.llamacpp_rollout`), else HF `generate`.
With `dynamic_sampling`, groups whose rewards are all equal are dropped and the batch is refilled
with fresh questions (DAPO); the rollout then also returns the refilled rows' dataset columns.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from masksearch.prompts import format_docs, information_block
from masksearch.student import Decoding, student_step
from masksearch.training.chat import ChatRenderer

log = logging.getLogger(__name__)

# generate(contexts, max_new_tokens, stop_strings) -> (new token ids, their logprobs or None)
GenerateFn = Callable[[list[list[int]], int, Sequence[str]], tuple[list[list[int]], Any]]
# HF `generate` calls on CPU take at most this many contexts unless `rollout_batch_size` says
CPU_ROLLOUT_BATCH = 4
# score(rows, trajectories) -> one reward per trajectory (the trainer's reward functions, weighted)
ScoreFn = Callable[[list[dict[str, Any]], list["Trajectory"]], list[float]]


@dataclass
class Trajectory:
    history: list[dict[str, Any]]  # prompt messages + turns so far (chat-template input)
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)  # completion as messages
    searches: int = 0
    turn: int = 0
    status: str = "running"  # answered | max_turns | truncated
    forced: bool = False  # the next generation is the forced answer

    @property
    def model_tokens(self) -> int:
        """Tokens the policy generated (`env_mask` 1): what DAPO's overlong penalty counts."""
        return sum(self.env_mask)

    @property
    def context(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def add(
        self, ids: Sequence[int], trainable: bool, logprobs: Sequence[float | None] | None = None
    ) -> None:
        self.completion_ids.extend(ids)
        self.env_mask.extend([1 if trainable else 0] * len(ids))
        self.logprobs.extend(list(logprobs) if logprobs is not None else [None] * len(ids))


class SearchRollout:
    """Runs batched multi-turn search episodes against a `Retriever`."""

    def __init__(
        self,
        retriever: Any,
        tokenizer: Any,
        *,
        topk: int = 3,
        max_turns: int = 4,
        max_turn_tokens: int = 500,
        max_obs_tokens: int = 500,
        max_completion_length: int = 2048,
        decoding: Decoding | None = None,
        rollout_batch_size: int | None = None,
        policy_generator: Any = None,
        tool_role: str = "user",
        max_passages: int | None = None,
        generate_fn: GenerateFn | None = None,
        num_generations: int = 1,
        score_fn: ScoreFn | None = None,
        refill_rows: Sequence[dict[str, Any]] | None = None,
        max_resample_rounds: int = 3,
        seed: int = 0,
    ) -> None:
        self.retriever, self.tok = retriever, tokenizer
        self.renderer = ChatRenderer(tokenizer, tool_role=tool_role)
        self.topk, self.max_turns = topk, max_turns
        self.max_passages = max_passages or 2 * topk  # the graph's default cap after merging
        self.max_turn_tokens, self.max_obs_tokens = max_turn_tokens, max_obs_tokens
        self.max_completion_length = max_completion_length
        self.decoding = decoding or Decoding()  # sampling values + stop strings (student.Decoding)
        # contexts per HF `generate` call: its KV cache and (on CPU) attention scores grow with it
        self.rollout_batch_size = rollout_batch_size
        self.generate_fn = generate_fn
        # a `GenerateFn` that follows the policy's weights (`sync(model, version)`): llama.cpp on
        # CPU (training.llamacpp_rollout)
        self.policy_generator = policy_generator
        self.eos_id = tokenizer.eos_token_id
        # DAPO dynamic sampling (on when a score function is given)
        self.num_generations = num_generations
        self.score_fn = score_fn
        self.refill_rows = list(refill_rows or [])
        self.max_resample_rounds = max_resample_rounds
        self._rng = random.Random(seed)
        self.stats: dict[str, float] = {}

    # -- TRL entry point ------------------------------------------------------------------------
    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        started = time.perf_counter()
        gen = self.generate_fn or self.trainer_generate(trainer)
        sync = _lockstep(trainer)
        rows: list[dict[str, Any]] | None = None
        training = bool(getattr(getattr(trainer, "model", None), "training", True))
        self.stats = {}
        if self.score_fn is not None and training:
            trajs, rows = self.run_dynamic(prompts, gen, sync=sync)
        else:
            trajs = self.run(prompts, gen, sync=sync)
        self.stats["rollout/seconds"] = time.perf_counter() - started
        engine = getattr(self.policy_generator, "stats", None)
        if engine is not None and gen is self.policy_generator:
            self.stats["rollout/weight_sync_s"] = engine.pop("last_sync_s", 0.0)
        if hasattr(trainer, "_metrics"):
            split = "train" if training else "eval"
            for name, value in self.stats.items():
                trainer._metrics[split][name].append(value)
        out: dict[str, Any] = {
            "prompt_ids": [t.prompt_ids for t in trajs],
            "completion_ids": [t.completion_ids for t in trajs],
            # sampling logprobs when the engine gives them (vLLM); the trainer recomputes otherwise
            "logprobs": [t.logprobs for t in trajs]
            if any(lp is not None for t in trajs for lp in t.logprobs)
            else None,
            "env_mask": [t.env_mask for t in trajs],
            "trajectory": [t.turns for t in trajs],
            "num_searches": [t.searches for t in trajs],
            "rollout_status": [t.status for t in trajs],
            "completion_tokens": [len(t.completion_ids) for t in trajs],
            "model_tokens": [t.model_tokens for t in trajs],
        }
        if rows is not None:  # refilled groups carry their own gold columns to the rewards
            for key in ("question", "answers", "task", "k", "id"):
                out[key] = [r.get(key) for r in rows]
        return out

    # -- episode loop ------------------------------------------------------------------------------
    def start(self, prompt: Any) -> Trajectory:
        msgs = (
            [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else [dict(m) for m in prompt]
        )
        ids = self.renderer.prompt_ids(msgs)
        self._dummy_ids = ids  # what an idle rank generates from while others still run
        return Trajectory(history=msgs, prompt_ids=ids)

    def run(
        self,
        prompts: list[Any],
        generate: GenerateFn,
        *,
        sync: Callable[[int], bool] | None = None,
    ) -> list[Trajectory]:
        """Play every prompt's episode to its end. `sync(n_active) -> any rank still active` keeps
        ranks in lockstep where generation is a collective (vLLM server, ZeRO-3)."""
        trajs = [self.start(p) for p in prompts]
        while True:
            active = [t for t in trajs if t.status == "running"]
            if sync is not None:
                if not sync(len(active)):
                    break
            elif not active:
                break
            # forced-answer turns stop only at </answer>; one call per stop set keeps it batched
            # (an episode that hits the turn limit in the first call is forced in the second)
            for forced in (False, True):
                # each episode's own remaining budget, one token kept free for the closing EOS;
                # the batch generates up to the largest and every episode is cut to its own
                group = [
                    (t, self.max_completion_length - 1 - len(t.completion_ids))
                    for t in active
                    if t.status == "running" and t.forced == forced
                ]
                if not group and sync is None:
                    continue
                stop = self.decoding.force_stop if forced else self.decoding.stop
                contexts = [t.context for t, _ in group] or [self._dummy_ids]  # lockstep filler
                room = min(self.max_turn_tokens, max((b for _, b in group), default=1))
                new, logprobs = generate(contexts, max(1, room), stop)
                for i, (t, b) in enumerate(group):
                    lps = logprobs[i] if logprobs is not None else None
                    self._take_turn(t, new[i], lps, b)
            self._observe([t for t in active if t.status == "searching"])
        return trajs

    def _take_turn(
        self, t: Trajectory, new: Sequence[int], lps: Sequence[float] | None, room: int
    ) -> None:
        """Apply one generated turn under the student rules (`masksearch.student.student_step`)."""
        from masksearch import prompts

        mark = len(t.completion_ids)
        ids, ended = self._cut(new)
        ids = ids[:room]
        ended = ended and bool(ids) and ids[-1] == self.eos_id
        t.add(ids, trainable=True, logprobs=list(lps[: len(ids)]) if lps is not None else None)
        raw = self.tok.decode(ids, skip_special_tokens=True)
        step = student_step(raw, t.turn, self.max_turns, forced=t.forced)
        text = step.text.strip()
        if (
            not ended
            and not raw.rstrip().endswith((*self.decoding.stop, *self.decoding.force_stop))
            and step.kind in ("answer", "search")
        ):
            # cut by a token limit inside an open tag: `student_step` would re-close it as if a
            # provider had dropped the stop sequence, but here the engines keep stop strings, so
            # the turn has no action (Search-R1: a length-cut action is invalid)
            step = student_step("", t.turn, self.max_turns, forced=t.forced)
            text = raw.strip()
        if step.kind != "answer" and len(t.completion_ids) >= self.max_completion_length - 1:
            t.turns.append({"role": "assistant", "content": text})
            t.status = "truncated"  # cut by the token budget: no EOS, overlong filtering applies
        elif step.kind in ("answer", "no_answer"):
            # the episode is over: answered, or the forced answer failed (reward 0, still trained)
            t.turns.append({"role": "assistant", "content": text})
            if not ended:
                t.add(self.renderer.end_ids(), trainable=False)
            t.status = "answered" if step.kind == "answer" else "max_turns"
        elif step.kind == "force_answer":
            # the turn at the limit is not kept (as in the graph): the forced generation follows
            # the conversation so far plus the must-answer user message
            self._force_answer(t, mark, prompts.AGENT_FORCE_ANSWER)
        elif step.kind == "search":
            t.turns.append({"role": "assistant", "content": text})
            t.status = "searching"
            t.pending = (text, step.queries, ended)  # type: ignore[attr-defined]
            t.turn += 1
        else:  # invalid: the corrective message, as the graph sends it
            t.turns.append({"role": "assistant", "content": text})
            tool = {"role": "tool", "name": "search", "content": step.observation}
            t.add(self._tool_turn_ids(t, text, step.observation, ended), trainable=False)
            t.history += [{"role": "assistant", "content": text}, tool]
            t.turns.append(tool)
            t.turn += 1
        if len(t.completion_ids) > self.max_completion_length:
            t.completion_ids = t.completion_ids[: self.max_completion_length]
            t.env_mask = t.env_mask[: self.max_completion_length]
            t.logprobs = t.logprobs[: self.max_completion_length]
            t.status = "truncated"

    def _force_answer(self, t: Trajectory, mark: int, message: str) -> None:
        """Drop the turn generated from `mark` on, and continue with a user turn: the context
        becomes exactly the chat-template rendering of history + the user message + the
        generation prompt (the generation prompt already at the end is re-rendered after it)."""
        del t.completion_ids[mark:], t.env_mask[mark:], t.logprobs[mark:]
        user = {"role": "user", "content": message}
        before = self.renderer.render(t.history, generation_prompt=True)
        after = self.renderer.render([*t.history, user], generation_prompt=True)
        head = self.renderer.render(t.history)
        gen_prompt = before[len(head) :]
        n = len(self.renderer.encode(gen_prompt)) if before.startswith(head) else 0
        tail = self.tok.decode(t.context[-n:]) if n else ""
        if n and tail == gen_prompt and after.startswith(head) and n <= len(t.completion_ids):
            del t.completion_ids[-n:], t.env_mask[-n:], t.logprobs[-n:]
            t.add(self.renderer.encode(after[len(head) :]), trainable=False)
        else:  # a template whose generation prompt cannot be peeled off: append the turn
            log.debug("forced answer: generation prompt not separable; appending the user turn")
            t.add(self.renderer.encode(after[len(before) :]), trainable=False)
        t.history.append(user)
        t.turns.append(user)
        t.forced = True

    def _cut(self, ids: Sequence[int]) -> tuple[list[int], bool]:
        """Generated ids up to the first EOS, then cut after the first closed action tag; the EOS
        stays (trainable) when it directly follows the action. Returns (ids, ends_with_eos)."""
        from masksearch.tagformat import truncate_after_action

        ids = list(ids)
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id) + 1]
        text = self.tok.decode(ids, skip_special_tokens=True)
        need = len(truncate_after_action(text))
        if need < len(text.rstrip()):
            for n in range(1, len(ids) + 1):
                if len(self.tok.decode(ids[:n], skip_special_tokens=True)) >= need:
                    ids = ids[:n]
                    break
        return ids, bool(ids) and ids[-1] == self.eos_id

    def _tool_turn_ids(self, t: Trajectory, text: str, content: str, ended: bool) -> list[int]:
        return self.renderer.continuation_ids(t.history, text, content, ended_with_eos=ended)

    def _user_turn_ids(self, t: Trajectory, text: str, content: str, ended: bool) -> list[int]:
        return self.renderer.continuation_ids(
            t.history, text, content, ended_with_eos=ended, role="user"
        )

    def _observe(self, searching: list[Trajectory]) -> None:
        """Run every pending search in one retriever batch and append the tool turns (masked);
        passages are merged exactly as the graph's search node merges them."""
        if not searching:
            return
        from masksearch.nodes.search import merge_results

        pending = [t.pending for t in searching]  # type: ignore[attr-defined]
        queries = [q for _, qs, _ in pending for q in qs]
        results = self.retriever.search(queries, self.topk)
        pos = 0
        for t, (text, qs, ended) in zip(searching, pending, strict=True):
            passages = merge_results(results[pos : pos + len(qs)], self.max_passages)
            pos += len(qs)
            info = information_block(self._clip(format_docs(passages)))
            t.add(self._tool_turn_ids(t, text, info, ended), trainable=False)
            tool = {"role": "tool", "name": "search", "content": info}
            t.history += [{"role": "assistant", "content": text}, tool]
            t.turns.append(tool)
            t.searches += 1
            t.status = "running"
            if len(t.completion_ids) >= self.max_completion_length:
                t.completion_ids = t.completion_ids[: self.max_completion_length]
                t.env_mask = t.env_mask[: self.max_completion_length]
                t.logprobs = t.logprobs[: self.max_completion_length]
                t.status = "truncated"

    def _clip(self, docs: str) -> str:
        ids = self.renderer.encode(docs)
        return (
            docs if len(ids) <= self.max_obs_tokens else self.tok.decode(ids[: self.max_obs_tokens])
        )

    # -- DAPO dynamic sampling -------------------------------------------------------------------
    def run_dynamic(
        self,
        prompts: list[Any],
        generate: GenerateFn,
        *,
        rows: list[dict[str, Any]] | None = None,
        sync: Callable[[int], bool] | None = None,
    ) -> tuple[list[Trajectory], list[dict[str, Any]]]:
        """Episodes for `prompts` (groups of `num_generations` consecutive copies); groups whose
        rewards are all equal carry no GRPO signal and are replaced by groups of fresh questions,
        for up to `max_resample_rounds` extra rounds (then the best we have is kept)."""
        g, score_fn = self.num_generations, self.score_fn
        if score_fn is None:
            raise ValueError("dynamic sampling needs a score_fn")
        if rows is None:
            rows = [self.row_for(p) for p in prompts]
        trajs = self.run(prompts, generate, sync=sync)
        scores = score_fn(rows, trajs)
        kept: list[tuple[list[dict[str, Any]], list[Trajectory], list[float]]] = []
        flat: list[tuple[list[dict[str, Any]], list[Trajectory], list[float]]] = []
        for i in range(0, len(trajs), g):
            group = (rows[i : i + g], trajs[i : i + g], scores[i : i + g])
            (kept if _varies(group[2]) else flat).append(group)
        n_groups = math.ceil(len(trajs) / g)
        rounds = 0
        while rounds < self.max_resample_rounds and self.refill_rows:
            need = max(0, n_groups - len(kept))
            if not (sync(need) if sync is not None else need):
                break  # every rank's batch is full (ranks decide together in lockstep mode)
            rounds += 1
            fresh = [self._rng.choice(self.refill_rows) for _ in range(need)]
            new_rows = [r for r in fresh for _ in range(g)]
            new_trajs = self.run([r["prompt"] for r in new_rows], generate, sync=sync)
            new_scores = score_fn(new_rows, new_trajs)
            for i in range(0, len(new_trajs), g):
                group = (new_rows[i : i + g], new_trajs[i : i + g], new_scores[i : i + g])
                (kept if _varies(group[2]) else flat).append(group)
        self.stats = {
            "dynamic_sampling/kept_groups": float(min(len(kept), n_groups)),
            "dynamic_sampling/resample_rounds": float(rounds),
        }
        chosen = (kept + flat)[:n_groups]  # still short after the budget: fill with flat groups
        out_rows = [r for grp in chosen for r in grp[0]]
        out_trajs = [t for grp in chosen for t in grp[1]]
        return out_trajs, out_rows

    def row_for(self, prompt: Any) -> dict[str, Any]:
        """The dataset row a prompt came from (looked up by its question)."""
        if not hasattr(self, "_by_prompt"):
            self._by_prompt = {_prompt_key(r["prompt"]): r for r in self.refill_rows}
        key = _prompt_key(prompt)
        if key not in self._by_prompt:
            raise KeyError(f"prompt not in the training rows: {key[:80]!r}")
        return self._by_prompt[key]

    # -- generation with the trainer's policy ------------------------------------------------------
    def trainer_generate(self, trainer: Any) -> GenerateFn:
        if getattr(trainer, "use_vllm", False):
            return self._vllm_generate(trainer)
        if self.policy_generator is not None:
            model = trainer.accelerator.unwrap_model(trainer.model)
            self.policy_generator.sync(model, trainer.state.global_step)
            return self.policy_generator  # type: ignore[no-any-return]
        return self._hf_generate(trainer)

    def _vllm_generate(self, trainer: Any) -> GenerateFn:
        """TRL's `VLLMGeneration` (colocate or server mode) with our per-turn budget and stops."""
        engine = trainer.vllm_generation

        def generate(
            contexts: list[list[int]], max_new_tokens: int, stop: Sequence[str]
        ) -> tuple[list[list[int]], list[list[float | None]] | None]:
            saved = engine.max_completion_length, engine.generation_kwargs
            engine.max_completion_length = max_new_tokens
            engine.generation_kwargs = {
                **(saved[1] or {}),
                **self.decoding.vllm_sampling_kwargs(),
                "stop": list(stop),
                "include_stop_str_in_output": True,
            }
            try:
                _, completion_ids, logprobs, _ = engine.generate(
                    prompts=contexts, images=None, num_generations=1
                )
            finally:
                engine.max_completion_length, engine.generation_kwargs = saved
            lps = [[(lp[0] if lp else None) for lp in seq] for seq in (logprobs or [])]
            return [list(c) for c in completion_ids], (lps or None)

        return generate

    def generate_batch_size(self, device: Any) -> int:
        """Contexts per HF `generate` call: `rollout_batch_size`, else all of them on a GPU and
        `CPU_ROLLOUT_BATCH` on CPU, where attention over a padded batch materialises every
        layer's (batch × heads × length²) fp32 scores (benchmarks/rl_memory.py)."""
        if self.rollout_batch_size:
            return int(self.rollout_batch_size)
        return CPU_ROLLOUT_BATCH if getattr(device, "type", "cpu") == "cpu" else 1 << 30

    def _hf_generate(self, trainer: Any) -> GenerateFn:
        import torch
        from trl.models import unwrap_model_for_generation

        def generate_chunk(
            contexts: list[list[int]], max_new_tokens: int, stop: Sequence[str]
        ) -> list[list[int]]:
            device = trainer.accelerator.device
            width = max(len(c) for c in contexts)
            pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=device)
            mask = torch.tensor(
                [[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device
            )
            with (
                unwrap_model_for_generation(
                    trainer.model_wrapped,
                    trainer.accelerator,
                    gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                ) as model,
                torch.no_grad(),
            ):
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    **self.decoding.hf_generate_kwargs(),
                    stop_strings=list(stop),
                    tokenizer=self.tok,
                    pad_token_id=pad,
                    eos_token_id=self.eos_id,
                )
            return [row.tolist() for row in out[:, width:]]

        def generate(
            contexts: list[list[int]], max_new_tokens: int, stop: Sequence[str]
        ) -> tuple[list[list[int]], None]:
            n = self.generate_batch_size(trainer.accelerator.device)
            out: list[list[int]] = []
            for start in range(0, len(contexts), n):
                out += generate_chunk(contexts[start : start + n], max_new_tokens, stop)
            return out, None

        return generate


def _varies(scores: Sequence[float]) -> bool:
    return max(scores) - min(scores) > 1e-6


def _prompt_key(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def _lockstep(trainer: Any) -> Callable[[int], bool] | None:
    """A cross-rank "anyone still active?" check where generation is a collective call: vLLM server
    mode / tensor parallel (gathers prompts) and ZeRO-3 HF generate (gathers parameters)."""
    acc = getattr(trainer, "accelerator", None)
    if acc is None or acc.num_processes <= 1:
        return None
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not (getattr(trainer, "use_vllm", False) or is_deepspeed_zero3_enabled()):
        return None
    import torch

    def any_active(n: int) -> bool:
        total = acc.gather(torch.tensor([n], device=acc.device)).sum().item()
        return bool(total)

    return any_active
