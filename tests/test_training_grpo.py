"""RL: multi-turn search rollouts with masked tool tokens, and a GRPO/DAPO CPU smoke run."""

from __future__ import annotations

import pytest

from masksearch.student import Decoding
from masksearch.training.rollout import SearchRollout
from masksearch.training.smoke import offline_tokenizer, tiny_model
from masksearch.types import Passage


@pytest.fixture(scope="session")
def tok():
    return offline_tokenizer()


class FakeRetriever:
    name = "fake"

    def __init__(self):
        self.calls = []

    def search(self, queries, k):
        self.calls.append(list(queries))
        return [
            [
                Passage(id=f"{q}-{j}", title="Eiffel Tower", text=f"SECRET{j} built 1889.")
                for j in range(k)
            ]
            for q in queries
        ]


TINY_RL = {
    "model": "tiny",
    "max_steps": 2,
    "num_generations": 2,
    "per_device_train_batch_size": 2,
    "max_turns": 2,
    "max_turn_tokens": 8,
    "max_completion_length": 256,
    "learning_rate": 1e-3,
    "warmup_steps": 0,
    "beta": 0.0,
    "curriculum": {"enabled": True},
    "save_strategy": "no",
    "disable_tqdm": True,
    "report_to": "none",
}

PROMPT = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "When was the Eiffel Tower built?"},
]
SEARCH = "<think>look it up</think>\n<search>eiffel tower\nbuilt year</search>"
ANSWER = "<think>found</think>\n<answer>1889</answer>"


def scripted(tok, turns, *, eos=True, tail=""):
    """A fake policy: returns the scripted turn (plus junk after the closing tag, like a sampler)."""
    calls = {"n": 0}

    def gen(contexts, max_new, stop):
        out = []
        for _ in contexts:
            text = turns[min(calls["n"], len(turns) - 1)] + tail
            ids = tok(text, add_special_tokens=False)["input_ids"] + (
                [tok.eos_token_id] if eos else []
            )
            out.append(ids[:max_new])
        calls["n"] += 1
        return out, None

    return gen


def test_rollout_masks_retrieved_tokens(tok):
    retr = FakeRetriever()
    ro = SearchRollout(
        retr, tok, topk=2, max_turns=3, max_turn_tokens=64, max_completion_length=1024
    )
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH, ANSWER], eos=False, tail=" junk after tag"))
    assert t.status == "answered" and t.searches == 1
    assert retr.calls == [["eiffel tower", "built year"]]
    assert len(t.env_mask) == len(t.completion_ids)
    model_text = tok.decode([i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if m])
    env_text = tok.decode([i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if not m])
    assert "SECRET" not in model_text and "<information>" not in model_text
    assert "junk" not in model_text  # cut after </search>
    assert (
        "<search>eiffel tower\nbuilt year</search>" in model_text
        and "<answer>1889</answer>" in model_text
    )
    assert "<information>Doc 1(Title: Eiffel Tower) SECRET0" in env_text
    # merged like the graph: round-robin over the queries, capped at 2 * topk
    assert (
        "Doc 2(Title: Eiffel Tower) SECRET0" in env_text
        and "Doc 3(Title: Eiffel Tower) SECRET1" in env_text
    )
    assert "Doc 4(" in env_text and "Doc 5(" not in env_text
    # the full sequence is exactly what the chat template renders for the conversation
    history = PROMPT + t.turns
    assert tok.decode(t.prompt_ids + t.completion_ids) == ro.renderer.render(history).rstrip("\n")
    assert t.completion_ids[-1] == tok.eos_token_id and t.env_mask[-1] == 0
    assert [m["role"] for m in t.turns] == ["assistant", "tool", "assistant"]


def test_rollout_policy_eos_is_trainable_and_kept(tok):
    """An EOS the policy wrote right after its action is its own token: env_mask 1."""
    ro = SearchRollout(FakeRetriever(), tok, max_turns=3, max_turn_tokens=64)
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH, ANSWER], eos=True))
    assert t.status == "answered"
    eos_positions = [i for i, x in enumerate(t.completion_ids) if x == tok.eos_token_id]
    policy_eos = [i for i in eos_positions if t.env_mask[i] == 1]
    assert len(policy_eos) == 2  # one per assistant turn; the tool turn's own end is the env's
    assert t.completion_ids[-1] == tok.eos_token_id and t.env_mask[-1] == 1
    assert tok.decode(t.prompt_ids + t.completion_ids) == ro.renderer.render(
        PROMPT + t.turns
    ).rstrip("\n")


def test_rollout_student_rules_and_budgets(tok):
    # out of turns: the forced-answer turn (the graph's rule), then the episode ends ON EOS
    ro = SearchRollout(
        FakeRetriever(), tok, max_turns=2, max_turn_tokens=64, max_completion_length=4096
    )
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH]))
    assert t.status == "max_turns" and t.searches == 2
    assert t.completion_ids[-1] == tok.eos_token_id
    assert [m["role"] for m in t.turns][-2:] == ["user", "assistant"]
    assert "final answer" in t.turns[-2]["content"]
    # the turn at the limit is dropped, as in the graph: the tokens are exactly the template
    # rendering of the kept conversation (the forced-answer input the graph builds)
    rendered = ro.renderer.render(PROMPT + t.turns).rstrip("\n")
    assert tok.decode(t.prompt_ids + t.completion_ids) == rendered
    # ... and a forced answer that answers counts as answered
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH, SEARCH, ANSWER]))
    assert t.status == "answered" and t.searches == 2
    # invalid action: the corrective message, as a tool turn, then the episode goes on
    ro = SearchRollout(FakeRetriever(), tok, max_turns=2, max_turn_tokens=64)
    (t,) = ro.run([PROMPT], scripted(tok, ["I do not know.", ANSWER]))
    assert t.status == "answered" and t.searches == 0
    assert t.turns[1]["role"] == "tool" and "previous action is invalid" in t.turns[1]["content"]
    model_text = tok.decode([i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if m])
    assert "invalid" not in model_text
    # a turn cut by the token limit inside <answer> is no answer (never re-closed)
    ro = SearchRollout(FakeRetriever(), tok, max_turns=1, max_turn_tokens=64)
    (t,) = ro.run([PROMPT], scripted(tok, ["<think>a</think><answer>1889 and then"], eos=False))
    assert t.status == "max_turns" and "<answer>" in t.turns[0]["content"]
    assert t.turns[1]["role"] == "tool" and "invalid" in t.turns[1]["content"]
    # the token budget: cut, no EOS (DAPO overlong filtering drops it)
    ro = SearchRollout(
        FakeRetriever(), tok, max_turns=4, max_turn_tokens=64, max_completion_length=60
    )
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH]))
    assert t.status == "truncated" and len(t.completion_ids) <= 60
    assert t.completion_ids[-1] != tok.eos_token_id
    ro = SearchRollout(FakeRetriever(), tok, max_obs_tokens=8)
    assert len(tok(ro._clip("word " * 100), add_special_tokens=False)["input_ids"]) <= 9


def test_dynamic_sampling_refills_flat_groups(tok):
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "answers": ["1889"], "id": str(i)}
        for i in range(6)
    ]
    seen = []

    def score(rs, trajs):  # q0's group is flat (all 0); every other question varies
        seen.extend(r["id"] for r in rs)
        return [0.0 if r["id"] == "0" else float(j % 2) for j, r in enumerate(rs)]

    ro = SearchRollout(
        FakeRetriever(),
        tok,
        max_turns=1,
        num_generations=2,
        score_fn=score,
        refill_rows=rows[1:],
        max_resample_rounds=2,
    )
    batch = [rows[0]] * 2 + [rows[1]] * 2
    trajs, out_rows = ro.run_dynamic(
        [r["prompt"] for r in batch], scripted(tok, [ANSWER]), rows=batch
    )
    ids = [r["id"] for r in out_rows]
    assert len(trajs) == 4 and ids[:2] == ["1", "1"] and "0" not in ids
    assert ids[2] == ids[3] and ro.stats["dynamic_sampling/resample_rounds"] == 1


def test_grpo_dapo_smoke_run_changes_weights(tok, tmp_path):
    from masksearch.training.config import build_settings
    from masksearch.training.grpo import grpo_args, train_grpo

    class HalfScripted(SearchRollout):
        """Real policy samples for odd rows; a scripted correct search episode for even rows, so the
        group has reward variance (a random tiny model never writes tags)."""

        def trainer_generate(self, trainer):
            real = super().trainer_generate(trainer)
            turn = {"n": 0}

            def gen(contexts, n, stop):
                out, _ = real(contexts, n, stop)
                script = tok((SEARCH if turn["n"] == 0 else ANSWER), add_special_tokens=False)[
                    "input_ids"
                ]
                turn["n"] += 1
                for i in range(0, len(out), 2):
                    out[i] = script + [tok.eos_token_id]
                return out, None

            return gen

    settings = build_settings("rl", {**TINY_RL, "output_dir": str(tmp_path / "rl")})
    cfg = grpo_args(settings)
    assert cfg.loss_type == "dapo" and cfg.epsilon_high == 0.28 and cfg.mask_truncated_completions
    retr = FakeRetriever()
    model = tiny_model(tok)
    w = model.model.layers[0].self_attn.q_proj.weight
    before = w.detach().clone()
    questions = [
        {
            "id": f"q{i}",
            "question": "When was the [mask] Tower built?",
            "answers": ["Eiffel"],
            "task": "ramp",
            "k": 1 + i % 2,
        }
        for i in range(4)
    ]
    rollout = HalfScripted(retr, tok, max_turns=2, max_turn_tokens=8, max_completion_length=256)
    stats = train_grpo(
        settings,
        questions=questions,
        model=model,
        tokenizer=tok,
        retriever=retr,
        rollout=rollout,
        save=False,
    )
    assert stats["global_step"] == 2
    assert retr.calls  # the scripted episodes searched our retriever
    assert not w.detach().equal(before)


def test_gae_skips_environment_tokens():
    import torch

    from masksearch.training.ppo import gae

    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    assert adv.tolist() == [[1.0, 0.0, 1.0, 1.0]] and ret.tolist() == adv.tolist()


def test_gae_matches_the_recursion_over_each_rows_agent_tokens():
    """γ, λ < 1, several rows: the recursion steps only through each row's masked positions."""
    import torch

    from masksearch.training.ppo import gae

    gen = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 7, generator=gen), torch.randn(3, 7, generator=gen)
    mask = (torch.rand(3, 7, generator=gen) > 0.4).float()
    adv, ret = gae(rewards, values, mask, 0.9, 0.8)
    for b in range(3):
        idx = [t for t in range(7) if mask[b, t]]
        last = nxt = 0.0
        for t in reversed(idx):
            last = float(rewards[b, t]) + 0.9 * nxt - float(values[b, t]) + 0.72 * last
            assert adv[b, t].item() == pytest.approx(last, abs=1e-5)
            nxt = float(values[b, t])
        assert all(adv[b, t].item() == 0.0 for t in range(7) if t not in idx)
    assert torch.allclose(ret, adv + values) and adv.dtype == rewards.dtype


@pytest.mark.slow
def test_ppo_adapter_smoke_run_changes_weights(tok, tmp_path):
    from masksearch.training.config import build_settings
    from masksearch.training.ppo import PPOAdapter
    from masksearch.training.rewards import build_reward_funcs
    from masksearch.training.rlsetup import build_rl_rows

    class HalfScriptedPPO(PPOAdapter):
        def _generate(self, contexts, max_new, stop):
            out, _ = super()._generate(contexts, max_new, stop)
            for i in range(0, len(out), 2):
                script = SEARCH if len(contexts[i]) < 300 else ANSWER
                out[i] = tok(script, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            return out, None

    settings = build_settings(
        "rl",
        {
            **TINY_RL,
            "algorithm": "ppo",
            "output_dir": str(tmp_path / "ppo"),
            "max_completion_length": 200,
            "beta": 0.001,
            "save_steps": 1,
            "ppo": {"ppo_epochs": 1, "mini_batch_size": 2},
        },
    )
    model = tiny_model(tok)
    w = model.model.layers[0].self_attn.q_proj.weight
    before = w.detach().clone()
    retr = FakeRetriever()
    questions = [
        {
            "id": "q",
            "question": "When was the Eiffel Tower built?",
            "answers": ["1889"],
            "task": "qa",
            "k": 0,
        }
    ] * 2
    adapter = HalfScriptedPPO(
        settings,
        model=model,
        tokenizer=tok,
        retriever=retr,
        reward_funcs=build_reward_funcs(["hybrid"]),
    )
    assert adapter.kl_coef == 0.001 and adapter.ref is not None
    stats = adapter.train(build_rl_rows(questions, settings))
    assert stats["global_step"] == 2 and stats["mean_reward"] > 0
    assert retr.calls and not w.detach().equal(before)
    assert (tmp_path / "ppo" / "checkpoint-1" / "ppo_state.json").exists()
    # resume: the saved step is picked up, the remaining step runs
    assert adapter.resume(True) == 1


def test_max_turns_episode_contributes_to_the_grpo_loss(tok, tmp_path):
    """An episode that never answers ends on EOS after its forced-answer turn: TRL's overlong
    filtering keeps it, its tokens are in the loss mask, and its (negative) advantage moves the
    loss — never answering is penalised."""
    import torch

    from masksearch.training.config import build_settings
    from masksearch.training.grpo import build_grpo_trainer

    script = [[SEARCH, SEARCH], [ANSWER, SEARCH], [SEARCH], [SEARCH]]
    calls = {"n": 0}

    def gen(contexts, max_new, stop):
        texts = script[min(calls["n"], len(script) - 1)]
        calls["n"] += 1
        return [
            tok(texts[i % len(texts)], add_special_tokens=False)["input_ids"][:max_new]
            for i in range(len(contexts))
        ], None

    settings = build_settings(
        "rl",
        {**TINY_RL, "output_dir": str(tmp_path / "rl"), "max_turns": 2, "max_turn_tokens": 64},
    )
    retr = FakeRetriever()
    rollout = SearchRollout(retr, tok, max_turns=2, max_turn_tokens=64, generate_fn=gen)
    q = {"id": "q", "question": "When was it built?", "answers": ["1889"], "task": "qa", "k": 0}
    trainer = build_grpo_trainer(
        settings,
        questions=[q, q],
        model=tiny_model(tok),
        tokenizer=tok,
        retriever=retr,
        rollout=rollout,
    )
    rows = [dict(trainer.train_dataset[0]) for _ in range(2)]  # one group (distinct dicts)
    out = trainer._generate_and_score_completions(rows)
    ids = out["completion_ids"]
    mask = out["completion_mask"] * out["tool_mask"]
    answered, never = 0, 1
    last = [row[m.bool()][-1].item() for row, m in zip(ids, out["completion_mask"], strict=True)]
    assert last[never] == tok.eos_token_id  # ends on EOS: not treated as truncated
    assert mask[never].sum() > 0 and out["advantages"][never] < 0 < out["advantages"][answered]
    out["advantages"][answered] = 0.0  # only the max-turns episode is left to move the loss
    trainer.current_gradient_accumulation_steps = 1  # set by train() in a real run
    loss = trainer.compute_loss(trainer.model, out)
    loss.backward()
    grad = trainer.model.model.layers[0].self_attn.q_proj.weight.grad
    assert loss.abs().item() > 0 and grad is not None and grad.abs().sum() > 0
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_held_out_sets_are_evaluated_during_training(tok, tmp_path):
    """`eval_questions` → TRL evaluates each held-out set with the same rollout and rewards."""
    from masksearch.training.config import build_settings
    from masksearch.training.grpo import build_grpo_trainer

    settings = build_settings(
        "rl",
        {**TINY_RL, "output_dir": str(tmp_path / "rl"), "eval_questions": ["unused.jsonl"]},
    )
    assert settings.args.eval_strategy == "steps" and settings.args.per_device_eval_batch_size == 2
    q = {"id": "q", "question": "When was it built?", "answers": ["1889"], "task": "qa", "k": 0}
    retr = FakeRetriever()
    trainer = build_grpo_trainer(
        settings,
        questions=[q, q],
        eval_questions={"ramp": [q, q], "hotpotqa": [q, q]},
        model=tiny_model(tok),
        tokenizer=tok,
        retriever=retr,
        rollout=SearchRollout(
            retr, tok, max_turns=1, max_turn_tokens=64, generate_fn=scripted(tok, [ANSWER])
        ),
    )
    metrics = trainer.evaluate()
    assert "eval_ramp_runtime" in metrics and "eval_hotpotqa_runtime" in metrics
    assert metrics["eval_rewards/hybrid_reward/mean"] == pytest.approx(1.0)  # scripted: correct


def test_vllm_generation_goes_through_trls_engine(tok):
    """`use_vllm`: each turn is one call to the trainer's `VLLMGeneration` (colocate or server —
    the same object) with our stop strings and per-turn budget; its settings are restored and the
    sampling log-probs come back for TRL's importance-sampling correction."""
    from types import SimpleNamespace

    class FakeEngine:
        max_completion_length = 2048
        generation_kwargs = {"seed": 1}
        calls = []

        def generate(self, prompts, images, num_generations):
            self.calls.append(
                (len(prompts), self.max_completion_length, dict(self.generation_kwargs))
            )
            text = SEARCH if len(self.calls) == 1 else ANSWER
            ids = tok(text, add_special_tokens=False)["input_ids"]
            return prompts, [ids for _ in prompts], [[[-0.5]] * len(ids) for _ in prompts], None

    engine = FakeEngine()
    trainer = SimpleNamespace(use_vllm=True, vllm_generation=engine, model=None, accelerator=None)
    decoding = Decoding(temperature=0.7, top_p=0.9)
    ro = SearchRollout(FakeRetriever(), tok, max_turns=2, max_turn_tokens=48, decoding=decoding)
    out = ro([PROMPT, PROMPT], trainer)
    assert [c[0] for c in engine.calls] == [2, 2] and engine.calls[0][1] == 48
    assert engine.calls[0][2] == {  # the one decoding config: sampling values and stop strings
        "seed": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "repetition_penalty": 1.0,
        "stop": ["</search>", "</answer>"],
        "include_stop_str_in_output": True,
    }
    assert out["model_tokens"] == [sum(m) for m in out["env_mask"]]  # what the penalty counts
    assert engine.max_completion_length == 2048 and engine.generation_kwargs == {"seed": 1}
    assert out["rollout_status"] == ["answered", "answered"]
    lps, mask = out["logprobs"][0], out["env_mask"][0]
    assert all((lp == -0.5) for lp, m in zip(lps, mask, strict=True) if m)  # generated tokens
    assert all(lp is None for lp, m in zip(lps, mask, strict=True) if not m)  # environment


def test_lora_keeps_trained_weights_fp32_over_a_bf16_base(tmp_path):
    import torch
    from peft import get_peft_model

    from masksearch.training.config import build_settings
    from masksearch.training.modeling import check_trainable_fp32, load_model, lora_config
    from masksearch.training.smoke import offline_tokenizer

    tok = offline_tokenizer()
    tiny_model(tok, hidden=16, layers=1).save_pretrained(tmp_path / "m")
    settings = build_settings(
        "sft",
        {"model": str(tmp_path / "m"), "lora": {"enabled": True, "r": 4, "base_dtype": "bfloat16"}},
    )
    base = load_model(settings, lora=settings.lora)
    assert next(base.parameters()).dtype == torch.bfloat16  # frozen base may be bf16
    model = get_peft_model(base, lora_config(settings.lora))
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    check_trainable_fp32(model)
    full = load_model(build_settings("sft", {"model": str(tmp_path / "m")}))
    assert all(p.dtype == torch.float32 for p in full.parameters())  # no LoRA: all fp32


def test_lora_base_is_fp32_under_zero3(tmp_path, monkeypatch):
    """ZeRO-3 keeps one dtype for all parameters (TRL then makes the adapters in the base's
    dtype): `auto` loads an fp32 base there, an explicit bf16 base is refused."""
    import torch
    import transformers.integrations

    from masksearch.errors import ConfigError
    from masksearch.training.config import build_settings
    from masksearch.training.modeling import load_model, lora_base_dtype
    from masksearch.training.smoke import offline_tokenizer

    assert lora_base_dtype("auto", bf16=True, zero3=False) == "bfloat16"
    assert lora_base_dtype("auto", bf16=True, zero3=True) == "float32"
    assert lora_base_dtype("auto", bf16=False, zero3=False) == "float32"
    assert lora_base_dtype("float32", bf16=True, zero3=False) == "float32"
    with pytest.raises(ConfigError, match="ZeRO-3"):
        lora_base_dtype("bfloat16", bf16=True, zero3=True)
    with pytest.raises(ConfigError, match="lora.base_dtype"):
        lora_base_dtype("fp16", bf16=True, zero3=False)
    with pytest.raises(ConfigError, match="lora.base_dtype must be one of"):  # at config time
        build_settings("sft", {"model": "m", "lora": {"base_dtype": "fp16"}}, "run.yaml")

    tiny_model(offline_tokenizer(), hidden=16, layers=1).save_pretrained(tmp_path / "m")
    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: True)
    lora = {"enabled": True, "r": 4, "base_dtype": "bfloat16"}
    settings = build_settings("sft", {"model": str(tmp_path / "m"), "lora": lora})
    with pytest.raises(ConfigError, match="ZeRO-3"):
        load_model(settings, lora=settings.lora)
    settings = build_settings(
        "sft", {"model": str(tmp_path / "m"), "lora": {**lora, "base_dtype": "auto"}}
    )
    base = load_model(settings, lora=settings.lora)
    assert all(p.dtype == torch.float32 for p in base.parameters())


class LongRetriever(FakeRetriever):
    def search(self, queries, k):
        self.calls.append(list(queries))
        text = " ".join(f"word{j}" for j in range(200))
        return [[Passage(id=f"{q}-{j}", title="T", text=text) for j in range(k)] for q in queries]


def test_overlong_penalty_counts_only_the_models_tokens(tok):
    """Long `<information>` blocks and short model turns: no DAPO overlong penalty (TRL's own
    punishment, which counts every completion token, would punish the retrieved text)."""
    from trl.rewards import get_soft_overlong_punishment

    from masksearch.training.config import build_settings
    from masksearch.training.rlsetup import build_rewards, make_score_fn

    ro = SearchRollout(
        LongRetriever(),
        tok,
        topk=3,
        max_turns=3,
        max_turn_tokens=64,
        max_obs_tokens=400,
        max_completion_length=1024,
    )
    (t,) = ro.run([PROMPT], scripted(tok, [SEARCH, SEARCH, ANSWER], eos=True))
    assert t.status == "answered" and t.searches == 2
    assert t.model_tokens < 100 < 600 < len(t.completion_ids)  # mostly retrieved text
    settings = build_settings(
        "rl",
        {
            **TINY_RL,
            "max_completion_length": 1024,
            "dapo": {"overlong_buffer": 256, "overlong_penalty": 1.0},
        },
    )
    funcs, weights = build_rewards(settings)
    penalty = funcs[-1]
    assert penalty.__name__ == "overlong_penalty"
    row = {"prompt": PROMPT, "answers": ["1889"], "task": "qa", "k": 0, "question": "q"}
    assert penalty(completion_ids=[t.completion_ids], env_mask=[t.env_mask]) == [0.0]
    assert penalty(model_tokens=[t.model_tokens]) == [0.0]
    trl_pen = get_soft_overlong_punishment(1024, 256)
    assert trl_pen(completion_ids=[t.completion_ids])[0] < -0.1  # what this replaces
    # the weighted score the trainer (and dynamic sampling) sees: correct, valid, no penalty
    assert make_score_fn(funcs, weights)([row], [t]) == [pytest.approx(1.0)]
    # the model's own tokens past the threshold are penalised, linearly up to -penalty
    assert penalty(model_tokens=[768, 896, 1024, 2000]) == pytest.approx([0.0, -0.5, -1.0, -1.0])


def test_hf_rollout_generates_in_bounded_batches(tok):
    """`rollout_batch_size` caps the contexts of one HF `generate` call (its KV cache and, on
    CPU, the attention scores grow with it: benchmarks/rl_memory.py); every context still gets
    its turn, in order. On CPU the default is `CPU_ROLLOUT_BATCH`."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from masksearch.training.rollout import CPU_ROLLOUT_BATCH

    model = tiny_model(tok)
    sizes = []
    real = model.generate

    def counting(**kw):
        sizes.append(kw["input_ids"].shape[0])
        return real(**kw)

    model.generate = counting
    trainer = SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        model_wrapped=model,
        args=SimpleNamespace(ds3_gather_for_generation=True),
        use_vllm=False,
    )
    contexts = [
        tok(f"question {i} " * (i + 1), add_special_tokens=False)["input_ids"] for i in range(5)
    ]
    ro = SearchRollout(None, tok, rollout_batch_size=2, decoding=Decoding(temperature=0.0))
    out, _ = ro.trainer_generate(trainer)(contexts, 3, ("</search>",))
    assert sizes == [2, 2, 1] and len(out) == 5 and all(1 <= len(o) <= 3 for o in out)
    sizes.clear()
    default = SearchRollout(None, tok, decoding=Decoding(temperature=0.0))
    default.trainer_generate(trainer)(contexts, 2, ("</search>",))
    assert (
        max(sizes) == CPU_ROLLOUT_BATCH == default.generate_batch_size(trainer.accelerator.device)
    )


def test_trainers_start_up_from_one_place(tok):
    """`start_rl` (GRPO and PPO) and `resolve_policy` (SFT and GRPO): a given part is used as is,
    a missing input is one clear error, and a full (non-LoRA) run refuses half-precision weights."""
    import torch

    from masksearch.errors import ConfigError, InputError
    from masksearch.training.config import build_settings
    from masksearch.training.modeling import resolve_policy
    from masksearch.training.rlsetup import start_rl

    settings = build_settings("rl", TINY_RL)
    retriever = FakeRetriever()
    with pytest.raises(InputError, match="no questions"):
        start_rl(settings, retriever=retriever, tokenizer=tok)
    questions = [{"id": "q1", "question": "When was the Eiffel Tower built?", "answers": ["1889"]}]
    start = start_rl(settings, questions=questions, retriever=retriever, tokenizer=tok)
    assert start.questions is questions and start.retriever is retriever and start.tokenizer is tok
    assert [r["id"] for r in start.rows] == ["q1"]
    assert start.rows[0]["prompt"][-1] == {"role": "user", "content": questions[0]["question"]}
    assert start.reward_funcs and len(start.reward_weights) == len(start.reward_funcs)

    from masksearch.training.smoke import tiny_model

    model = tiny_model(tok)
    assert resolve_policy(settings, model) is model  # fp32: trainable as is
    with pytest.raises(ConfigError, match="float32"):
        resolve_policy(settings, model.to(torch.bfloat16))
