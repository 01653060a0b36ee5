"""Supervised fine-tuning on trajectory records with TRL's `SFTTrainer`.

Loss only on the model's own turns: TRL's `assistant_only_loss` needs `{% generation %}` markers
that common templates (Qwen2.5, SmolLM2, Llama 3) lack, so we build `input_ids`/`labels` ourselves
(`ChatRenderer.tokenize_conversation`) and hand TRL a tokenized dataset; it uses our labels as is.
Retrieved `<information>` tool turns, the system prompt and the question never carry a label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.records import TrajectoryRecord
from masksearch.training.chat import IGNORE_INDEX, ChatRenderer
from masksearch.training.config import SFTSettings
from masksearch.training.data import load_training_records, record_k, record_messages

log = logging.getLogger(__name__)


def build_sft_rows(
    records: Sequence[TrajectoryRecord], renderer: ChatRenderer, *, max_length: int | None = None
) -> list[dict[str, Any]]:
    """Tokenized rows `{input_ids, labels, k, id}`; rows whose labels are all cut off are dropped."""
    rows = []
    dropped = 0
    for rec in records:
        row = renderer.tokenize_conversation(record_messages(rec), max_length=max_length)
        if all(label == IGNORE_INDEX for label in row["labels"]):
            dropped += 1
            continue
        rows.append({**row, "k": record_k(rec), "id": rec["id"]})
    if dropped:
        log.warning(
            "dropped %d record(s) with no assistant token within max_length=%s", dropped, max_length
        )
    if not rows:
        raise InputError(
            f"no trainable rows (all {dropped} record(s) exceed max_length={max_length}?)"
        )
    return rows


def sft_args(settings: SFTSettings) -> Any:
    """The run's `SFTConfig` (built by `load_settings`, curriculum and eval keys derived)."""
    return settings.args


def train_sft(
    settings: SFTSettings,
    *,
    records: Sequence[TrajectoryRecord] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[Any] | None = None,
    save: bool = True,
) -> dict[str, Any]:
    """Fine-tune `settings.model` (or the given `model`) on the records; returns run stats."""
    from datasets import Dataset
    from trl import SFTTrainer

    from masksearch.training.curriculum import curriculum_rows
    from masksearch.training.devices import device_summary
    from masksearch.training.modeling import (
        check_trainable_fp32,
        lora_config,
        resolve_policy,
        resolve_resume,
        resolve_tokenizer,
    )
    from masksearch.training.plan import announce, sft_plan

    log.info("%s", device_summary())
    if records is None:
        if not settings.records:
            raise InputError("no training records given (set `records:` or pass --records)")
        records = load_training_records(settings.records, accepted_only=settings.accepted_only)
    args = sft_args(settings)
    tokenizer = resolve_tokenizer(settings, tokenizer)
    renderer = ChatRenderer(tokenizer, tool_role=settings.tool_role)
    rows = build_sft_rows(records, renderer, max_length=args.max_length)
    rows = curriculum_rows(rows, settings.curriculum, seed=args.seed)
    dataset = Dataset.from_list(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    )
    eval_dataset = None
    if settings.eval_records:
        held_out = load_training_records(settings.eval_records, accepted_only=True)
        eval_rows = build_sft_rows(held_out, renderer, max_length=args.max_length)
        eval_dataset = Dataset.from_list(
            [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in eval_rows]
        )
    model = resolve_policy(settings, model)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
    )
    check_trainable_fp32(trainer.model)
    plan = announce(
        sft_plan(
            args,
            [len(r["input_ids"]) for r in rows],
            label_counts=[sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in rows],
            world_size=getattr(args, "world_size", 1),
        )
    )
    result = trainer.train(
        resume_from_checkpoint=resolve_resume(settings.resume_from_checkpoint, args.output_dir)
    )
    if save:
        trainer.save_model(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
    stats = {
        "output_dir": str(Path(args.output_dir)),
        "examples": len(rows),
        "train_loss": float(result.training_loss),
        "global_step": int(result.global_step),
        "planned_steps": plan.optimizer_steps,
        "label_tokens": sum(sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in rows),
    }
    log.info("SFT done: %s", stats)
    return stats
