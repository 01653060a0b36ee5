"""PPO for the search agent: our own actor-critic loop on `accelerate`, to the same bar as TRL's
trainers (TRL 1.x ships no PPO; the old `trl.experimental.ppo` was single-turn with a reward model).

- Same inputs as GRPO: `RLSettings`, the trainer keys in `settings.args` (a `GRPOConfig`: learning
  rate, warmup/schedule, gradient accumulation, clipping, logging, `report_to`, `save_steps`,
  `bf16`, gradient checkpointing), the same multi-turn `SearchRollout` and reward functions.
- `accelerate`: one process or many (`accelerate launch`, DDP or DeepSpeed ZeRO-2/3 from the same
  configs as SFT/GRPO), fp32 master weights with bf16 autocast, LoRA (the reference policy is the
  base with the adapters switched off), periodic `save_state` checkpoints and resume.
- The algorithm (Search-R1's PPO): retrieved tokens (`env_mask` 0) are excluded from the policy,
  value and KL terms; the rule reward lands on the last generated token; per-token KL to a frozen
  reference (`beta`, Search-R1 `kl_coef` 0.001); GAE over the model's own tokens (gamma = lam = 1);
  clipped policy (`epsilon`) and value (`ppo.cliprange_value`) losses. The critic is a linear value
  head on the policy's last hidden state (shared backbone, its own learning rate `ppo.critic_lr`).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from masksearch.training.config import RLSettings

log = logging.getLogger(__name__)
Tensor = torch.Tensor


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Advantages and returns over the positions where `mask` is 1 (others are skipped, not
    stepped through): [B, T] tensors in, [B, T] out (zeros where mask is 0).

    The recursion runs on the host over plain floats, after one copy of each tensor: indexing
    a GPU tensor element by element would launch and wait for a kernel per token."""
    r = rewards.detach().double().cpu().tolist()
    v = values.detach().double().cpu().tolist()
    m = mask.detach().cpu().tolist()
    adv = [[0.0] * len(row) for row in r]
    for b, row in enumerate(adv):
        last, nxt_value = 0.0, 0.0
        for t in range(len(row) - 1, -1, -1):
            if m[b][t]:
                last = r[b][t] + gamma * nxt_value - v[b][t] + gamma * lam * last
                row[t] = last
                nxt_value = v[b][t]
    out = torch.tensor(adv, dtype=rewards.dtype, device=rewards.device)
    return out, out + values


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) / (var.sqrt() + eps) * mask


class PolicyWithValue(torch.nn.Module):
    """The policy plus a zero-initialised linear value head, as one module (one optimizer, one
    accelerate/DeepSpeed engine)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        hidden = policy.config.hidden_size
        self.v_head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.v_head.weight)
        torch.nn.init.zeros_(self.v_head.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.policy(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        hidden = out.hidden_states[-1]
        return out.logits, self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)


def _value_model(policy: Any) -> PolicyWithValue:
    return PolicyWithValue(policy)


def _token_logps(logits: Tensor, ids: Tensor) -> Tensor:
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


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
        reward_weights: list[float] | None = None,
        rollout: Any = None,
        accelerator: Any = None,
    ) -> None:
        from accelerate import Accelerator
        from transformers import get_scheduler

        from masksearch.training.modeling import check_trainable_fp32, lora_config
        from masksearch.training.rlsetup import make_rollout, make_score_fn

        self.s, self.h, self.args = settings, settings.ppo, settings.args
        args = self.args
        self.kl_coef, self.cliprange = args.beta, args.epsilon
        self.tok = tokenizer
        report = [r for r in (args.report_to or []) if r not in ("none", "quiet")]
        self.acc = accelerator or Accelerator(
            mixed_precision="bf16" if args.bf16 else "fp16" if args.fp16 else "no",
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=report or None,
            project_dir=args.output_dir,
            cpu=bool(getattr(args, "use_cpu", False)),
        )
        peft = lora_config(settings.lora)
        if peft is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft)
        check_trainable_fp32(model)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs
                or {"use_reentrant": False}
            )
            model.config.use_cache = False
        self.lora = peft is not None
        ref = None
        if self.kl_coef and not self.lora:
            import copy

            ref = copy.deepcopy(model).eval().requires_grad_(False)
        self.rollout = rollout or make_rollout(settings, retriever, tokenizer)
        self.reward_funcs = reward_funcs
        self.weights = reward_weights or [1.0] * len(reward_funcs)
        self._score = make_score_fn(self.reward_funcs, self.weights)
        vm = _value_model(model)
        opt = torch.optim.AdamW(
            [
                {
                    "params": [p for p in vm.policy.parameters() if p.requires_grad],
                    "lr": args.learning_rate,
                },
                {"params": list(vm.v_head.parameters()), "lr": self.h.critic_lr},
            ],
            weight_decay=args.weight_decay,
        )
        self.total_steps = self._total_steps()
        sched = get_scheduler(
            args.lr_scheduler_type,
            opt,
            num_warmup_steps=args.get_warmup_steps(self.total_steps),
            num_training_steps=self.total_steps,
        )
        # the schedule steps once per PPO iteration (not per process): kept out of `prepare`
        self.model, self.opt = self.acc.prepare(vm, opt)
        self.sched = sched
        self.acc.register_for_checkpointing(sched)
        self.ref = None
        if ref is not None:
            if self.acc.state.deepspeed_plugin is not None:
                from trl.models import prepare_deepspeed

                self.ref = prepare_deepspeed(ref, self.acc)
            else:
                self.ref = ref.to(self.acc.device)
        self.rows_seen = 0
        self.iterations = 0  # PPO iterations run by this process (the rollout weights' version)

    def _total_steps(self) -> int:
        return self.args.max_steps if self.args.max_steps > 0 else 1

    # -- model passes ------------------------------------------------------------------------------
    def _policy(self) -> Any:
        return self.acc.unwrap_model(self.model).policy

    def _ref_logps(self, ids: Tensor, attn: Tensor) -> Tensor | None:
        with torch.no_grad(), self.acc.autocast():
            if self.lora:
                with self._policy().disable_adapter():
                    logits = self._policy()(input_ids=ids, attention_mask=attn).logits
            elif self.ref is not None:
                logits = self.ref(input_ids=ids, attention_mask=attn).logits
            else:
                return None
        return _token_logps(logits, ids)

    def _generate(
        self, contexts: list[list[int]], max_new: int, stop: Sequence[str]
    ) -> tuple[list[list[int]], None]:
        """The policy's turns, at most the rollout's `generate_batch_size` contexts per call."""
        n = self.rollout.generate_batch_size(self.acc.device)
        out: list[list[int]] = []
        for start in range(0, len(contexts), n):
            out += self._generate_chunk(contexts[start : start + n], max_new, stop)[0]
        return out, None

    def _generate_chunk(
        self, contexts: list[list[int]], max_new: int, stop: Sequence[str]
    ) -> tuple[list[list[int]], None]:
        import contextlib

        from transformers.integrations import is_deepspeed_zero3_enabled

        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        width = max(len(c) for c in contexts)
        dev = self.acc.device
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=dev)
        attn = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=dev)
        self.model.eval()
        gather: Any = contextlib.nullcontext()
        if is_deepspeed_zero3_enabled():  # generation needs the full (gathered) weights
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(self.model.parameters()))
        with gather, torch.no_grad():
            out = self._policy().generate(
                input_ids=ids,
                attention_mask=attn,
                max_new_tokens=max_new,
                **self.rollout.decoding.hf_generate_kwargs(),
                stop_strings=list(stop),
                tokenizer=self.tok,
                pad_token_id=pad,
                eos_token_id=self.tok.eos_token_id,
                use_cache=True,
            )
        self.model.train()
        return [row.tolist() for row in out[:, width:]], None

    def _sync(self) -> Callable[[int], bool] | None:
        """Ranks generate in lockstep under ZeRO-3 (generation gathers the sharded weights)."""
        if self.acc.num_processes <= 1:
            return None
        from transformers.integrations import is_deepspeed_zero3_enabled

        if not is_deepspeed_zero3_enabled():
            return None
        return lambda n: bool(
            self.acc.gather(torch.tensor([n], device=self.acc.device)).sum().item()
        )

    # -- one PPO iteration -----------------------------------------------------------------------------
    def step(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        self.iterations += 1
        gen = getattr(self.rollout, "policy_generator", None)
        if gen is not None:  # llama.cpp rollouts: the policy's weights as of this iteration
            gen.sync(self._policy(), self.iterations)
        else:
            gen = self._generate
        trajs = self.rollout.run([r["prompt"] for r in rows], gen, sync=self._sync())
        # the reward columns GRPO's dynamic sampling builds (env_mask/model_tokens included)
        scores = self._score(rows, trajs)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        seqs = [t.prompt_ids + t.completion_ids for t in trajs]
        width = max(len(s) for s in seqs)
        dev = self.acc.device
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
            logits, values = self.model(ids, attn)
            old_logp, old_values = _token_logps(logits, ids), values[:, :-1].float()
            ref_logp = self._ref_logps(ids, attn)
            kl = (old_logp - ref_logp) if ref_logp is not None else torch.zeros_like(old_logp)
            rewards = -self.kl_coef * kl * act
            for b in range(len(trajs)):
                pos = act[b].nonzero().flatten()
                if len(pos):
                    rewards[b, pos[-1]] += scores[b]
            adv, returns = gae(rewards, old_values * act, act, self.h.gamma, self.h.lam)
            adv = masked_whiten(adv, act)
        stats = {
            "reward": sum(scores) / len(scores),
            "kl": float((kl * act).sum() / act.sum().clamp(min=1)),
            "searches": sum(t.searches for t in trajs) / len(trajs),
        }
        order = list(range(len(trajs)))
        losses = []
        for _ in range(self.h.ppo_epochs):
            random.shuffle(order)
            for i in range(0, len(order), self.h.mini_batch_size):
                mb = order[i : i + self.h.mini_batch_size]
                with self.acc.accumulate(self.model):
                    logits, values = self.model(ids[mb], attn[mb])
                    logp, values = _token_logps(logits, ids[mb]), values[:, :-1].float()
                    m = act[mb]
                    n = m.sum().clamp(min=1)
                    ratio = torch.exp(logp - old_logp[mb])
                    pg = torch.max(
                        -adv[mb] * ratio,
                        -adv[mb] * ratio.clamp(1 - self.cliprange, 1 + self.cliprange),
                    )
                    v_clip = old_values[mb] + (values - old_values[mb]).clamp(
                        -self.h.cliprange_value, self.h.cliprange_value
                    )
                    vf = torch.max((values - returns[mb]) ** 2, (v_clip - returns[mb]) ** 2)
                    loss = ((pg * m).sum() + self.h.vf_coef * 0.5 * (vf * m).sum()) / n
                    self.acc.backward(loss)
                    if self.acc.sync_gradients and self.args.max_grad_norm:
                        self.acc.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
                    self.opt.step()
                    self.opt.zero_grad()
                losses.append(loss.detach().item())
        self.sched.step()
        stats["loss"] = sum(losses) / max(1, len(losses))
        stats["lr"] = self.sched.get_last_lr()[0]
        return stats

    # -- the run --------------------------------------------------------------------------------------
    def _checkpoints(self) -> list[Path]:
        out = Path(self.args.output_dir)
        found = [p for p in out.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self, step: int) -> Path:
        path = Path(self.args.output_dir) / f"checkpoint-{step}"
        self.acc.save_state(str(path))
        if self.acc.is_main_process:
            (path / "ppo_state.json").write_text(json.dumps({"global_step": step}))
            limit = self.args.save_total_limit
            if limit:
                for old in self._checkpoints()[:-limit]:
                    import shutil

                    shutil.rmtree(old, ignore_errors=True)
        return path

    def resume(self, resume: str | bool | None) -> int:
        """Load a checkpoint (a directory, or True = the latest); returns the step reached."""
        if not resume:
            return 0
        path = Path(str(resume)) if resume is not True else None
        if path is None:
            found = self._checkpoints()
            if not found:
                log.info("no checkpoint in %s yet: starting a fresh run", self.args.output_dir)
                return 0
            path = found[-1]
        self.acc.load_state(str(path))
        step = json.loads((path / "ppo_state.json").read_text())["global_step"]
        log.info("resumed from %s at step %d", path, step)
        return int(step)

    def train(
        self, rows: list[dict[str, Any]], *, resume: str | bool | None = None
    ) -> dict[str, Any]:
        from tqdm.auto import trange

        args = self.args
        bs = args.per_device_train_batch_size
        if not self.s.curriculum.enabled:
            rows = random.Random(args.seed).sample(rows, len(rows))
        rank, world = self.acc.process_index, self.acc.num_processes
        from masksearch.training.plan import announce, rl_plan

        announce(
            rl_plan(
                args,
                len(rows),
                world_size=world,
                kind="ppo",
                decoding=self.rollout.decoding.to_dict(),
            )
        )
        start = self.resume(resume)
        if self.acc.log_with:
            self.acc.init_trackers("masksearch-ppo", config={"learning_rate": args.learning_rate})
        history = []
        for step in trange(
            start,
            self.total_steps,
            desc="PPO",
            disable=args.disable_tqdm or not self.acc.is_main_process,
        ):
            first = (step * bs * world + rank * bs) % len(rows)  # each rank its own slice
            batch = [rows[(first + j) % len(rows)] for j in range(bs)]
            stats = self.step(batch)
            history.append(stats)
            if (step + 1) % max(1, args.logging_steps) == 0:
                self.acc.log(stats, step=step + 1)
                log.info("PPO step %d: %s", step + 1, stats)
            if (
                args.save_steps
                and (step + 1) % int(args.save_steps) == 0
                and step + 1 < self.total_steps
            ):
                self.save_checkpoint(step + 1)
        self.acc.end_training()
        n = max(1, len(history))
        return {
            "global_step": self.total_steps,
            "train_loss": sum(h["loss"] for h in history) / n,
            "mean_reward": sum(h["reward"] for h in history) / n,
        }

    def save_model(self, output_dir: str) -> None:
        """The policy (full weights, or the LoRA adapter) + the value head; works under ZeRO-3."""
        state = self.acc.get_state_dict(self.model)
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return
        policy_state = {k[len("policy.") :]: v for k, v in state.items() if k.startswith("policy.")}
        head = {k[len("v_head.") :]: v for k, v in state.items() if k.startswith("v_head.")}
        self._policy().save_pretrained(output_dir, state_dict=policy_state)
        torch.save(head, f"{output_dir}/value_head.pt")


def train_ppo(
    settings: RLSettings,
    *,
    questions: list[dict[str, Any]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    retriever: Any = None,
    rollout: Any = None,
    judge_model: Any = None,
    save: bool = True,
) -> dict[str, Any]:
    """PPO counterpart of `train_grpo` (same inputs, same rewards, same rollout)."""
    from masksearch.training.modeling import load_model, resolve_resume
    from masksearch.training.rlsetup import start_rl

    start = start_rl(
        settings,
        questions=questions,
        retriever=retriever,
        tokenizer=tokenizer,
        judge_model=judge_model,
    )
    tokenizer = start.tokenizer
    model = model if model is not None else load_model(settings, lora=settings.lora)
    torch.manual_seed(settings.args.seed)
    random.seed(settings.args.seed)
    adapter = PPOAdapter(
        settings,
        model=model,
        tokenizer=tokenizer,
        retriever=start.retriever,
        reward_funcs=start.reward_funcs,
        reward_weights=start.reward_weights,
        rollout=rollout,
    )
    out = settings.args.output_dir
    stats = adapter.train(start.rows, resume=resolve_resume(settings.resume_from_checkpoint))
    if save:
        Path(out).mkdir(parents=True, exist_ok=True)
        adapter.save_model(out)
        if adapter.acc.is_main_process:
            tokenizer.save_pretrained(out)
    stats["output_dir"] = out
    return stats
