"""Self-evolving teacher loop with injected fakes: the pool grows, rounds are recorded, reruns resume."""

from __future__ import annotations

import json

import pytest

from masksearch.errors import InputError
from masksearch.store.trajectories import TrajectoryStore
from masksearch.training.evolve import EvolveSettings, evolve, fresh_batches, teacher_spec
from masksearch.training.smoke import example_record
from masksearch.types import MaskedExample, Span


def examples(n):
    return [
        MaskedExample(
            id=f"m{i}",
            question=f"The [mask] number {i}.",
            answers=[str(i)],
            spans=[Span(4, 10, str(i))],
        )
        for i in range(n)
    ]


class FakeTeacher:
    """Fake trainer step + fake model: 'trains' by recording the pool, 'generates' records in the store,
    accepting every example whose number is even (the judge filter)."""

    def __init__(self):
        self.trained_on, self.specs = [], []

    def train(self, pool, teacher_dir, round_):
        teacher_dir.mkdir(parents=True)
        (teacher_dir / "config.json").write_text("{}")
        self.trained_on.append(sorted(r["id"] for r in pool))
        return {"train_loss": 1.0 / round_}

    async def generate(self, batch, spec, store, round_):
        self.specs.append(spec)
        store.parent.mkdir(parents=True, exist_ok=True)
        with TrajectoryStore(store) as st:
            for ex in batch:
                rec = example_record(0)
                rec.update(
                    id=ex.id,
                    question=ex.question,
                    answers=ex.answers,
                    accepted=int(ex.id[1:]) % 2 == 0,
                )
                st.put(rec)


def test_two_rounds_grow_the_pool_and_write_stats(tmp_path):
    fake = FakeTeacher()
    seed = [example_record(100), example_record(101, accepted=False)]
    settings = EvolveSettings(out_dir=str(tmp_path / "evo"), rounds=2, batch_size=4)
    stats = evolve(seed, examples(10), settings, train_fn=fake.train, generate_fn=fake.generate)
    assert [s["round"] for s in stats] == [1, 2]
    assert fake.trained_on[0] == ["ex100"]  # rejected seed records are not in the pool
    assert fake.trained_on[1] == ["ex100", "m0", "m2"]  # round 2 trains on the grown pool
    assert [s["pool_size"] for s in stats] == [3, 5]
    assert [s["new_accepted"] for s in stats] == [2, 2]
    assert [s["generated"] for s in stats] == [4, 4] and stats[0]["accept_rate"] == 0.5
    assert stats[1]["train_loss"] == 0.5
    assert fake.specs[0] == f"local:{tmp_path / 'evo' / 'round_1' / 'teacher'}"
    rows = [
        json.loads(line) for line in (tmp_path / "evo" / "rounds.jsonl").read_text().splitlines()
    ]
    assert rows == stats
    pool = [json.loads(line) for line in (tmp_path / "evo" / "pool.jsonl").read_text().splitlines()]
    assert [r["id"] for r in pool] == ["ex100", "m0", "m2", "m4", "m6"]
    assert pool[-1]["meta"]["round"] == 2

    # rerun with one more round: rounds 1-2 are skipped, round 3 gets fresh questions only
    settings.rounds = 3
    again = evolve(seed, examples(12), settings, train_fn=fake.train, generate_fn=fake.generate)
    assert [s["round"] for s in again] == [1, 2, 3]
    assert len(fake.trained_on) == 3 and again[2]["pool_size"] == 7


def test_helpers_and_errors(tmp_path):
    used = {"m1"}
    b = fresh_batches(examples(6), used, 2, 2)
    assert [[e.id for e in x] for x in b] == [["m0", "m2"], ["m3", "m4"]]
    s = EvolveSettings(out_dir=str(tmp_path), serve_url="http://127.0.0.1:8000/v1")
    assert teacher_spec(tmp_path, s) == "openai-compatible:teacher@http://127.0.0.1:8000/v1"
    fake = FakeTeacher()
    with pytest.raises(InputError, match="no accepted"):
        evolve(
            [example_record(accepted=False)],
            examples(2),
            EvolveSettings(out_dir=str(tmp_path / "x")),
            train_fn=fake.train,
            generate_fn=fake.generate,
        )


def test_graph_generate_builds_the_single_agent_context(tmp_path, monkeypatch):
    import masksearch.pipeline.generate as gen_mod
    from masksearch.training.evolve import graph_generate_fn

    seen = {}

    async def fake_generate(batch, context, store, settings, **kw):
        seen.update(batch=batch, context=context, store=store, settings=settings, kw=kw)

    monkeypatch.setattr(gen_mod, "generate", fake_generate)
    settings = EvolveSettings(
        out_dir=str(tmp_path),
        context={"retriever": "bm25:idx", "judge_model": "fake:j.json"},
        concurrency=3,
    )
    import asyncio

    spec = f"local:{tmp_path / 'round_1' / 'teacher'}"
    asyncio.run(
        graph_generate_fn(settings)(examples(2), spec, tmp_path / "round_1" / "t.sqlite", 1)
    )
    ctx = seen["context"]
    assert ctx.agent_mode == "single_agent" and ctx.planner_model == spec
    assert ctx.retriever == "bm25:idx" and ctx.judge_model == "fake:j.json"
    assert seen["settings"].concurrency == 3 and len(seen["batch"]) == 2


def _tiny_sft_settings(tmp_path):
    """A tiny random model with the real offline tokenizer, saved as the base; 1-step SFT settings."""
    from masksearch.training.config import build_settings
    from masksearch.training.smoke import offline_tokenizer, tiny_model

    tok = offline_tokenizer()
    base = tmp_path / "base"
    tiny_model(tok).save_pretrained(base)
    tok.save_pretrained(base)
    return build_settings(
        "sft",
        {
            "model": str(base),
            "max_steps": 1,
            "max_length": 256,
            "warmup_steps": 0,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "save_strategy": "no",
            "disable_tqdm": True,
        },
    )


def test_one_round_with_real_sft_on_a_tiny_model(tmp_path):
    from masksearch.training.evolve import sft_train_fn

    sft = _tiny_sft_settings(tmp_path)
    fake = FakeTeacher()
    stats = evolve(
        [example_record(1)],
        examples(2),
        EvolveSettings(out_dir=str(tmp_path / "evo"), rounds=1, batch_size=2),
        train_fn=sft_train_fn(sft),
        generate_fn=fake.generate,
    )
    teacher = tmp_path / "evo" / "round_1" / "teacher"
    assert (teacher / "config.json").exists() and (teacher / "tokenizer_config.json").exists()
    assert stats[0]["train_loss"] > 0 and stats[0]["pool_size"] == 2


def test_one_round_end_to_end_with_the_trained_teacher_in_the_graph(tmp_path):
    """Real SFT, then the real graph generating with the teacher as `local:<dir>`, judged, stored."""
    from masksearch.graph.testing import KeywordRetriever
    from masksearch.resources import Resources
    from masksearch.training.evolve import graph_generate_fn, sft_train_fn
    from masksearch.types import Passage

    sft = _tiny_sft_settings(tmp_path)
    res = Resources(
        retrievers={"mem:evo": KeywordRetriever([Passage("p0", "Number", "The number 0.")])}
    )
    settings = EvolveSettings(
        out_dir=str(tmp_path / "evo"),
        rounds=1,
        batch_size=2,
        concurrency=2,
        context={"retriever": "mem:evo", "max_turns": 1, "max_tokens": 8},
    )
    stats = evolve(
        [example_record(1)],
        examples(2),
        settings,
        train_fn=sft_train_fn(sft),
        generate_fn=graph_generate_fn(settings, res),
    )
    store = tmp_path / "evo" / "round_1"
    records = [
        r
        for p in store.rglob("*.sqlite")
        if "ckpt" not in p.name
        for r in TrajectoryStore(p).records()
    ]
    # a 1-step random teacher cannot answer: both runs are recorded, judged and rejected
    assert sorted(r["id"] for r in records) == ["m0", "m1"]
    assert all(r["models"] and not r["accepted"] for r in records)
    assert stats[0]["pool_size"] == 1 and stats[0]["new_accepted"] == 0
