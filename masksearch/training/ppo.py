"""PPO for the search agent, behind one adapter: our `RLSettings` in, a trained policy out.

TRL 1.16 ships no PPO trainer (the old `trl.experimental.ppo` is gone, and it was single-turn with
a reward *model* only), so the adapter runs a compact actor-critic PPO of our own over the same
multi-turn `SearchRollout` the GRPO path uses: retrieved tokens (`env_mask` 0) are excluded from
the policy, value and KL terms; the rule reward lands on the last generated token; per-token KL
to a frozen reference (Search-R1: `kl_coef` 0.001); GAE over the model's own tokens
(Search-R1: gamma = lam = 1); clipped policy and value losses. The critic is a linear value head
on the policy's last hidden state (shared backbone, its own learning rate).
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from typing import Any

from masksearch.training.config import RLSettings

log = logging.getLogger(__name__)


@dataclass
class PPOHyper:
    ppo_epochs: int = 2
    mini_batch_size: int = 4
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 1.0
    kl_coef: float = 0.001
    critic_lr: float = 1e-5
    max_grad_norm: float = 1.0

    @classmethod
    def from_settings(cls, s: RLSettings) -> PPOHyper:
        known = {k: v for k, v in s.trainer_args.items() if k in cls.__dataclass_fields__}
        return cls(**{"kl_coef": s.beta, "cliprange": s.epsilon, **known})


def _torch():
    import torch

    return torch


def gae(rewards, values, mask, gamma: float, lam: float):
    """Advantages and returns over the positions where `mask` is 1 (others are skipped, not
    stepped through): [B, T] tensors in, [B, T] out (zeros where mask is 0)."""
    torch = _torch()
    adv = torch.zeros_like(rewards)
    for b in range(rewards.size(0)):
        idx = mask[b].nonzero().flatten().tolist()
        last, nxt_value = 0.0, 0.0
        for t in reversed(idx):
            delta = rewards[b, t] + gamma * nxt_value - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
            nxt_value = values[b, t]
    return adv, adv + values


def masked_whiten(x, mask, eps: float = 1e-8):
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) / (var.sqrt() + eps) * mask


class PPOAdapter:
    """Maps `RLSettings` onto the PPO loop; `train()` returns run stats."""

    def __init__(
        self,
        settings: RLSettings,
        *,
        model: Any,
        tokenizer: Any,
        retriever: Any,
        reward_funcs: list[Any],
        rollout: Any = None,
    ) -> None:
        torch = _torch()
        from masksearch.training.grpo import make_rollout

        self.s, self.h = settings, PPOHyper.from_settings(settings)
        self.model, self.tok = model, tokenizer
        self.rollout = rollout or make_rollout(settings, retriever, tokenizer)
        self.reward_funcs = reward_funcs
        self.weights = settings.reward_weights or [1.0] * len(reward_funcs)
        self.ref = copy.deepcopy(model).eval().requires_grad_(False) if self.h.kl_coef else None
        hidden = model.config.hidden_size
        self.value_head = torch.nn.Linear(hidden, 1).to(next(model.parameters()).device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.opt = torch.optim.AdamW(
            [
                {
                    "params": [p for p in model.parameters() if p.requires_grad],
                    "lr": settings.learning_rate,
                },
                {"params": self.value_head.parameters(), "lr": self.h.critic_lr},
            ]
        )

    # -- model passes ------------------------------------------------------------------------------
    def _forward(self, model, ids, attn, with_values: bool):
        torch = _torch()
        out = model(input_ids=ids, attention_mask=attn, output_hidden_states=with_values)
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        logp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        values = (
            self.value_head(out.hidden_states[-1][:, :-1].float()).squeeze(-1)
            if with_values
            else None
        )
        return logp, values

    def _generate(self, contexts: list[list[int]], max_new: int) -> list[list[int]]:
        torch = _torch()
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        width = max(len(c) for c in contexts)
        dev = next(self.model.parameters()).device
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=dev)
        attn = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=dev)
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=attn,
                max_new_tokens=max_new,
                do_sample=True,
                temperature=self.s.temperature,
                top_p=self.s.top_p,
                stop_strings=["</search>", "</answer>"],
                tokenizer=self.tok,
                pad_token_id=pad,
                eos_token_id=self.tok.eos_token_id,
            )
        self.model.train()
        return [row.tolist() for row in out[:, width:]]

    # -- one PPO iteration -----------------------------------------------------------------------------
    def step(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        torch = _torch()
        trajs = self.rollout.run([r["prompt"] for r in rows], self._generate)
        cols = {k: [r[k] for r in rows] for k in ("answers", "task", "k", "question")}
        comps = [[{"role": "assistant", "content": ""}] for _ in trajs]
        per_func = [
            f(
                prompts=[r["prompt"] for r in rows],
                completions=comps,
                trajectory=[t.turns for t in trajs],
                **cols,
            )
            for f in self.reward_funcs
        ]
        scores = [
            sum(w * fr[i] for w, fr in zip(self.weights, per_func, strict=True))
            for i in range(len(rows))
        ]
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        seqs = [t.prompt_ids + t.completion_ids for t in trajs]
        width = max(len(s) for s in seqs)
        dev = next(self.model.parameters()).device
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=dev)
        attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=dev)
        # action mask over predicted positions (token t+1 predicted at t): model-generated tokens only
        act = torch.zeros(len(trajs), width - 1, device=dev)
        for b, t in enumerate(trajs):
            start = len(t.prompt_ids) - 1
            act[b, start : start + len(t.env_mask)] = torch.tensor(
                t.env_mask, dtype=torch.float, device=dev
            )
        with torch.no_grad():
            old_logp, old_values = self._forward(self.model, ids, attn, True)
            kl = (
                (old_logp - self._forward(self.ref, ids, attn, False)[0])
                if self.ref is not None
                else 0 * old_logp
            )
            rewards = -self.h.kl_coef * kl * act
            for b in range(len(trajs)):
                pos = act[b].nonzero().flatten()
                if len(pos):
                    rewards[b, pos[-1]] += scores[b]
            adv, returns = gae(rewards, old_values * act, act, self.h.gamma, self.h.lam)
            adv = masked_whiten(adv, act)
        stats = {
            "reward": sum(scores) / len(scores),
            "kl": float((kl * act).sum() / act.sum().clamp(min=1)),
        }
        order = list(range(len(trajs)))
        for _ in range(self.h.ppo_epochs):
            random.shuffle(order)
            for i in range(0, len(order), self.h.mini_batch_size):
                mb = order[i : i + self.h.mini_batch_size]
                logp, values = self._forward(self.model, ids[mb], attn[mb], True)
                m = act[mb]
                n = m.sum().clamp(min=1)
                ratio = torch.exp(logp - old_logp[mb])
                pg = torch.max(
                    -adv[mb] * ratio,
                    -adv[mb] * ratio.clamp(1 - self.h.cliprange, 1 + self.h.cliprange),
                )
                v_clip = old_values[mb] + (values - old_values[mb]).clamp(
                    -self.h.cliprange_value, self.h.cliprange_value
                )
                vf = torch.max((values - returns[mb]) ** 2, (v_clip - returns[mb]) ** 2)
                loss = ((pg * m).sum() + self.h.vf_coef * 0.5 * (vf * m).sum()) / n
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    list(self.model.parameters()) + list(self.value_head.parameters()),
                    self.h.max_grad_norm,
                )
                self.opt.step()
                stats["loss"] = loss.detach().item()
        return stats

    def train(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from tqdm.auto import trange

        steps = (
            self.s.max_steps
            if self.s.max_steps > 0
            else max(1, len(rows) // self.s.per_device_train_batch_size)
        )
        bs = self.s.per_device_train_batch_size
        if not self.s.curriculum.enabled:
            rows = random.Random(self.s.seed).sample(rows, len(rows))
        history = []
        for step in trange(steps, desc="PPO", disable=self.s.report_to == "quiet"):
            start = (step * bs) % len(rows)
            batch = (rows + rows)[start : start + bs]
            stats = self.step(batch)
            history.append(stats)
            if (step + 1) % max(1, self.s.logging_steps) == 0:
                log.info("PPO step %d: %s", step + 1, stats)
        return {
            "global_step": steps,
            "train_loss": sum(h["loss"] for h in history) / len(history),
            "mean_reward": sum(h["reward"] for h in history) / len(history),
        }


def train_ppo(
    settings: RLSettings,
    *,
    questions: list[dict[str, Any]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    retriever: Any = None,
    rollout: Any = None,
    save: bool = True,
) -> dict[str, Any]:
    """PPO counterpart of `train_grpo` (same inputs, same rewards, same rollout)."""
    from masksearch.training.data import load_questions
    from masksearch.training.grpo import build_rl_rows, resolve_retriever
    from masksearch.training.modeling import device_summary, load_model, load_tokenizer
    from masksearch.training.rewards import build_reward_funcs

    log.info("%s", device_summary())
    if questions is None:
        questions = load_questions(
            settings.questions, accepted_only=settings.accepted_only, limit=settings.limit
        )
    retriever = resolve_retriever(settings, retriever)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(settings)
    model = model if model is not None else load_model(settings)
    _torch().manual_seed(settings.seed)
    random.seed(settings.seed)
    adapter = PPOAdapter(
        settings,
        model=model,
        tokenizer=tokenizer,
        retriever=retriever,
        reward_funcs=build_reward_funcs(settings.rewards, hybrid=settings.hybrid),
        rollout=rollout,
    )
    stats = adapter.train(build_rl_rows(questions, settings))
    if save:
        model.save_pretrained(settings.output_dir)
        tokenizer.save_pretrained(settings.output_dir)
        _torch().save(adapter.value_head.state_dict(), f"{settings.output_dir}/value_head.pt")
    stats["output_dir"] = settings.output_dir
    return stats
