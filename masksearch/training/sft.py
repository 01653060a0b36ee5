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


def _sft_config(settings: SFTSettings, *, curriculum: bool) -> Any:
    from trl import SFTConfig

    from masksearch.training.modeling import use_bf16

    args: dict[str, Any] = dict(
        output_dir=settings.output_dir,
        max_length=settings.max_length,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        lr_scheduler_type=settings.lr_scheduler_type,
        weight_decay=settings.weight_decay,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        report_to=settings.report_to,
        bf16=use_bf16(settings.dtype),
        assistant_only_loss=False,  # our labels already do it
        completion_only_loss=False,
    )
    if curriculum:
        args.update(train_sampling_strategy="sequential", shuffle_dataset=False)
    if settings.gradient_checkpointing:
        args["gradient_checkpointing"] = True
    args.update(settings.trainer_args)
    return SFTConfig(**args)


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

    from masksearch.training.curriculum import curriculum_order
    from masksearch.training.modeling import device_summary, load_model, load_tokenizer, lora_config

    log.info("%s", device_summary())
    if records is None:
        if not settings.records:
            raise InputError("no training records given (set `records:` or pass --records)")
        records = load_training_records(settings.records, accepted_only=settings.accepted_only)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(settings)
    renderer = ChatRenderer(tokenizer, tool_role=settings.tool_role)
    rows = build_sft_rows(records, renderer, max_length=settings.max_length)
    cur = settings.curriculum
    if cur.enabled:
        plan = curriculum_order(
            [r["k"] for r in rows],
            cur.stages,
            mode=cur.mode,
            shuffle_within_stage=cur.shuffle_within_stage,
            seed=settings.seed,
        )
        rows = [rows[i] for i in plan.order]
    dataset = Dataset.from_list(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    )
    model = model if model is not None else load_model(settings)
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(settings, curriculum=cur.enabled),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
    )
    result = trainer.train()
    if save:
        trainer.save_model(settings.output_dir)
        tokenizer.save_pretrained(settings.output_dir)
    stats = {
        "output_dir": str(Path(settings.output_dir)),
        "examples": len(rows),
        "train_loss": float(result.training_loss),
        "global_step": int(result.global_step),
        "label_tokens": sum(sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in rows),
    }
    log.info("SFT done: %s", stats)
    return stats
