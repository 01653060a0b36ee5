"""Multi-turn search rollouts for RL: the policy writes `<think>`/`<search>`, our retriever answers
with an `<information>` tool turn, and so on until `<answer>` (or the turn/token budget runs out).

The completion is built token by token as it happens: generated tokens get `env_mask` 1, the tool
turn and chat-template glue the environment inserts get 0 — so retrieved text never enters the
policy loss and nothing is re-tokenised. `SearchRollout` is a TRL `rollout_func`
(`rollout(prompts, trainer) -> {prompt_ids, completion_ids, logprobs, env_mask, trajectory, …}`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from masksearch.prompts import format_docs, information_block
from masksearch.tagformat import STOP_STRINGS, parse_action
from masksearch.training.chat import ChatRenderer

log = logging.getLogger(__name__)

# generate(list of context token ids, max_new_tokens) -> new token ids per context
GenerateFn = Callable[[list[list[int]], int], list[list[int]]]


@dataclass
class Trajectory:
    history: list[dict[str, Any]]  # prompt messages + turns so far (chat-template input)
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)  # completion as messages
    searches: int = 0
    status: str = "running"  # answered | no_action | max_turns | truncated

    @property
    def context(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def add(self, ids: Sequence[int], trainable: bool) -> None:
        self.completion_ids.extend(ids)
        self.env_mask.extend([1 if trainable else 0] * len(ids))


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
        temperature: float = 1.0,
        top_p: float = 1.0,
        tool_role: str = "user",
        max_passages: int | None = None,
        generate_fn: GenerateFn | None = None,
    ) -> None:
        self.retriever, self.tok = retriever, tokenizer
        self.renderer = ChatRenderer(tokenizer, tool_role=tool_role)
        self.topk, self.max_turns = topk, max_turns
        self.max_passages = max_passages or 2 * topk  # the graph's default cap after merging
        self.max_turn_tokens, self.max_obs_tokens = max_turn_tokens, max_obs_tokens
        self.max_completion_length = max_completion_length
        self.temperature, self.top_p = temperature, top_p
        self.generate_fn = generate_fn
        self.eos_id = tokenizer.eos_token_id

    # -- TRL entry point ------------------------------------------------------------------------
    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        gen = self.generate_fn or self._trainer_generate(trainer)
        trajs = self.run(prompts, gen)
        return {
            "prompt_ids": [t.prompt_ids for t in trajs],
            "completion_ids": [t.completion_ids for t in trajs],
            "logprobs": None,  # recomputed by the trainer
            "env_mask": [t.env_mask for t in trajs],
            "trajectory": [t.turns for t in trajs],
            "num_searches": [t.searches for t in trajs],
            "rollout_status": [t.status for t in trajs],
        }

    # -- episode loop ------------------------------------------------------------------------------
    def run(self, prompts: list[Any], generate: GenerateFn) -> list[Trajectory]:
        trajs = []
        for p in prompts:
            msgs = [{"role": "user", "content": p}] if isinstance(p, str) else [dict(m) for m in p]
            trajs.append(Trajectory(history=msgs, prompt_ids=self.renderer.prompt_ids(msgs)))
        for turn in range(self.max_turns + 1):
            active = [t for t in trajs if t.status == "running"]
            if not active:
                break
            budget = [self.max_completion_length - len(t.completion_ids) for t in active]
            new = generate([t.context for t in active], max(1, min(self.max_turn_tokens, *budget)))
            searching: list[tuple[Trajectory, str, list[str], bool]] = []
            for t, ids, room in zip(active, new, budget, strict=True):
                ids, ended = self._cut(ids)
                ids = ids[:room]
                t.add(ids, trainable=True)
                text = self.tok.decode(ids, skip_special_tokens=True).strip()
                t.turns.append({"role": "assistant", "content": text})
                action = parse_action(text)
                if len(t.completion_ids) >= self.max_completion_length and action.kind != "answer":
                    t.status = "truncated"
                elif action.kind == "answer":
                    if not ended:
                        t.add(self.renderer.end_ids(), trainable=False)
                    t.status = "answered"
                elif action.kind == "search" and turn < self.max_turns:
                    searching.append((t, text, action.queries, ended))
                else:
                    t.status = "max_turns" if action.kind == "search" else "no_action"
            self._observe(searching)
        for t in trajs:
            if len(t.completion_ids) > self.max_completion_length:
                t.completion_ids = t.completion_ids[: self.max_completion_length]
                t.env_mask = t.env_mask[: self.max_completion_length]
                t.status = "truncated"
        return trajs

    def _cut(self, ids: Sequence[int]) -> tuple[list[int], bool]:
        """Generated ids up to the first EOS or the first closing action tag; (ids, ended_with_eos)."""
        ids = list(ids)
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id) + 1]
        text = self.tok.decode(ids, skip_special_tokens=True)
        hits = [text.find(s) for s in STOP_STRINGS if s in text]
        if hits:
            need = min(hits) + len(
                "</search>" if text[min(hits) :].startswith("</search>") else "</answer>"
            )
            for n in range(1, len(ids) + 1):
                if len(self.tok.decode(ids[:n], skip_special_tokens=True)) >= need:
                    ids = ids[:n]
                    break
        return ids, bool(ids) and ids[-1] == self.eos_id

    def _observe(self, searching: list[tuple[Trajectory, str, list[str], bool]]) -> None:
        """Run every pending search in one retriever batch and append the tool turns (masked);
        passages are merged exactly as the graph's search node merges them."""
        if not searching:
            return
        from masksearch.nodes.search import merge_results

        queries = [q for _, _, qs, _ in searching for q in qs]
        results = self.retriever.search(queries, self.topk)
        pos = 0
        for t, text, qs, ended in searching:
            passages = merge_results(results[pos : pos + len(qs)], self.max_passages)
            pos += len(qs)
            info = information_block(self._clip(format_docs(passages)))
            asst = {"role": "assistant", "content": text}
            suffix = self.renderer.continuation_ids(t.history, text, info, ended_with_eos=ended)
            t.add(suffix, trainable=False)
            t.history += [asst, {"role": "tool", "name": "search", "content": info}]
            t.turns.append({"role": "tool", "name": "search", "content": info})
            t.searches += 1

    def _clip(self, docs: str) -> str:
        ids = self.renderer.encode(docs)
        return (
            docs if len(ids) <= self.max_obs_tokens else self.tok.decode(ids[: self.max_obs_tokens])
        )

    # -- generation with the trainer's policy ------------------------------------------------------
    def _trainer_generate(self, trainer: Any) -> GenerateFn:
        import torch
        from trl.models import unwrap_model_for_generation

        def generate(contexts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
            device = trainer.accelerator.device
            width = max(len(c) for c in contexts)
            pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=device)
            mask = torch.tensor(
                [[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device
            )
            with (
                unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model,
                torch.no_grad(),
            ):
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=self.temperature,
                    top_p=self.top_p,
                    stop_strings=list(STOP_STRINGS),
                    tokenizer=self.tok,
                    pad_token_id=pad,
                    eos_token_id=self.eos_id,
                )
            return [row.tolist() for row in out[:, width:]]

        return generate
