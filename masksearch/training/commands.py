"""CLI: `masksearch export`, `masksearch train sft|rl`, `masksearch evolve` (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, overload

import typer

from masksearch.context import Context
from masksearch.context_options import context_options

if TYPE_CHECKING:
    from masksearch.training.config import RLSettings, SFTSettings

train_app = typer.Typer(
    help="Train a search agent on trajectories (SFT) or with search rollouts (GRPO/DAPO, PPO).",
    no_args_is_help=True,
)

CONFIG_HELP = (
    "YAML config (see masksearch/training/configs/). Settings not given keep their defaults."
)
SET_HELP = "Override a setting: --set key=value (repeatable; dotted keys, e.g. lora.enabled=true)."

# the options `train sft` and `train rl` share
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)]
OutputDirOption = Annotated[
    str | None, typer.Option("--output-dir", "-o", help="Where checkpoints and the model go.")
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)]
MaxStepsOption = Annotated[
    int | None,
    typer.Option(
        "--max-steps", help="Stop after this many training steps (the setting max_steps)."
    ),
]


@overload
def _settings(kind: Literal["sft"], options: dict[str, Any]) -> SFTSettings: ...
@overload
def _settings(kind: Literal["rl"], options: dict[str, Any]) -> RLSettings: ...
def _settings(kind: str, options: dict[str, Any]) -> SFTSettings | RLSettings:
    """A `train` command's settings from its parsed options: the --config file, then the --set
    pairs, then every other option given (each named after the setting it sets; None: not given,
    the config's value stays)."""
    from masksearch.training.config import load_settings, parse_overrides

    given = dict(options)
    config, sets = given.pop("config"), given.pop("sets")
    overrides = parse_overrides(sets or [])
    overrides.update({k: v for k, v in given.items() if v is not None})
    return load_settings(kind, config, overrides)


def _announce() -> None:
    from masksearch.training.devices import device_summary

    typer.secho(device_summary(), fg=typer.colors.CYAN, err=True)


@train_app.command("sft")
def train_sft_cmd(
    ctx: typer.Context,
    config: ConfigOption = None,
    records: Annotated[
        str | None, typer.Option("--records", help="Trajectory store (.sqlite) or JSONL export.")
    ] = None,
    output_dir: OutputDirOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Base model: hub id, local directory, or an embedded model "
            "(local:smollm2-135m, local:qwen2.5-coder-0.5b, local:default), converted once to a "
            "cached HF checkpoint.",
        ),
    ] = None,
    all_records: Annotated[
        bool, typer.Option("--all", help="Also train on records the judge rejected.")
    ] = False,
    max_steps: MaxStepsOption = None,
    sets: SetOption = None,
) -> None:
    """Supervised fine-tuning: loss only on the agent's own turns (retrieved text masked)."""
    options = dict(ctx.params)
    options["accepted_only"] = False if options.pop("all_records") else None
    settings = _settings("sft", options)
    from masksearch.training.data import load_training_records
    from masksearch.training.sft import train_sft

    if not settings.records:
        raise typer.BadParameter("no records: pass --records or set `records:` in the config")
    recs = load_training_records(settings.records, accepted_only=settings.accepted_only)
    typer.echo(
        f"SFT on {len(recs)} trajectories from {settings.records} → {settings.args.output_dir}"
    )
    _announce()
    stats = train_sft(settings, records=recs)
    typer.echo(f"done: {stats}")


@train_app.command("rl")
def train_rl_cmd(
    ctx: typer.Context,
    config: ConfigOption = None,
    questions: Annotated[
        str | None,
        typer.Option(
            "--records",
            help="Questions: RAMP masked JSONL, FlashRAG QA JSONL, or trajectory records.",
        ),
    ] = None,
    output_dir: OutputDirOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Policy: hub id, local directory (e.g. an SFT run) or an embedded model "
            "(local:smollm2-135m).",
        ),
    ] = None,
    retriever: Annotated[
        str | None, typer.Option("--retriever", help="Retriever spec, e.g. bm25:indexes/wiki.")
    ] = None,
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", help="grpo (DAPO loss, default) or ppo.")
    ] = None,
    max_steps: MaxStepsOption = None,
    sets: SetOption = None,
) -> None:
    """RL with multi-turn search rollouts against a retriever (GRPO with the DAPO loss, or PPO)."""
    settings = _settings("rl", ctx.params)
    from masksearch.training.data import load_questions

    if not settings.questions:
        raise typer.BadParameter("no questions: pass --records or set `questions:` in the config")
    rows = load_questions(
        settings.questions, accepted_only=settings.accepted_only, limit=settings.limit
    )
    typer.echo(
        f"{settings.algorithm.upper()} on {len(rows)} questions from {settings.questions} "
        f"→ {settings.args.output_dir}"
    )
    _announce()
    if settings.algorithm == "grpo":
        from masksearch.training.grpo import train_grpo

        stats = train_grpo(settings, questions=rows)
    elif settings.algorithm == "ppo":
        from masksearch.training.ppo import train_ppo

        stats = train_ppo(settings, questions=rows)
    else:
        raise typer.BadParameter(f"unknown algorithm {settings.algorithm!r} (grpo or ppo)")
    typer.echo(f"done: {stats}")


@train_app.command("export-gguf")
def export_gguf_cmd(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="A trained output dir (full checkpoint or LoRA adapter), or an embedded base "
            "(local:<name>) to write the untrained base at the students' precision."
        ),
    ],
    base: Annotated[
        str,
        typer.Option(
            "--base", help="The base GGUF whose metadata/tokenizer is kept: local:<name> or a file."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The student .gguf to write.")],
    qtype: Annotated[str, typer.Option("--type", help="q8_0 (default), f16 or f32.")] = "q8_0",
) -> None:
    """Write a trained student as GGUF (served by `local:<file.gguf>` on llama.cpp)."""
    from masksearch.models.students import write_student_gguf

    path = write_student_gguf(checkpoint, base, out, qtype=qtype)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); serve it as local:{path}")


def export_cmd(
    records: Annotated[
        str,
        typer.Option(
            "--records", help="Trajectory store (.sqlite) or JSONL (verl: also masked/QA JSONL)."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="trl | sharegpt | verl")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output file (.jsonl for trl, .json for sharegpt, .parquet for verl).",
        ),
    ],
    all_records: Annotated[
        bool, typer.Option("--all", help="Include records the judge rejected.")
    ] = False,
    style: Annotated[
        str,
        typer.Option("--style", help="tags (text as generated) or tool_calls (structured calls)."),
    ] = "tags",
    split: Annotated[str, typer.Option("--split", help="verl: extra_info.split.")] = "train",
    name: Annotated[
        str, typer.Option("--name", help="sharegpt: dataset name in dataset_info.json.")
    ] = "masksearch",
) -> None:
    """Export trajectories for other trainers: TRL, LLaMA-Factory (ShareGPT), Search-R1/veRL."""
    from masksearch.training.export import Style, export

    if style not in ("tags", "tool_calls"):
        raise typer.BadParameter("--style must be tags or tool_calls")
    n = export(
        records,
        fmt,
        out,
        accepted_only=not all_records,
        style=cast("Style", style),  # checked above
        split=split,
        dataset_name=name,
    )
    typer.echo(f"wrote {n} rows to {out}")


# evolve sets these graph settings itself: each round's teacher in single_agent mode
EVOLVE_SETS = frozenset(
    {"planner_model", "rewriter_model", "observer_model", "agent_mode", "review_queries"}
)


@context_options(exclude=EVOLVE_SETS)
def evolve_cmd(
    seed_records: Annotated[
        str, typer.Option("--seed-records", help="Seed trajectories (multi-agent startup, judged).")
    ],
    masked: Annotated[
        str, typer.Option("--masked", help="RAMP masked JSONL: fresh questions for each round.")
    ],
    model: Annotated[
        str, typer.Option("--model", help="Base model every round's teacher is fine-tuned from.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (pool.jsonl, rounds.jsonl, round_<i>/).")
    ],
    rounds: Annotated[int, typer.Option("--rounds", help="Teacher rounds.")] = 3,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Fresh questions per round.")
    ] = 1000,
    sft_config: Annotated[
        Path | None,
        typer.Option("--sft-config", help="SFT YAML for the teacher (model is overridden)."),
    ] = None,
    serve_url: Annotated[
        str | None,
        typer.Option(
            "--serve-url",
            help="OpenAI-compatible server serving each teacher (else local:<dir> in-process).",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Parallel graph runs.")] = 8,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help=SET_HELP + " Applies to the SFT settings.")
    ] = None,
    context: Context = None,  # type: ignore[assignment]  # built from the options
) -> None:
    """Self-evolving teacher: SFT a teacher on the pool, generate on fresh RAMP questions, judge, grow."""
    from masksearch.masking.io import load_masked
    from masksearch.training.data import load_training_records
    from masksearch.training.evolve import EvolveSettings, evolve, graph_generate_fn, sft_train_fn

    sft = _settings("sft", {"config": sft_config, "sets": sets, "model": model})
    settings = EvolveSettings(
        out_dir=str(out),
        rounds=rounds,
        batch_size=batch_size,
        serve_url=serve_url,
        context={k: v for k, v in context.to_dict().items() if k not in EVOLVE_SETS},
        concurrency=concurrency,
    )
    seed = load_training_records(seed_records, accepted_only=True)
    _announce()
    stats = evolve(
        seed,
        load_masked(masked),
        settings,
        train_fn=sft_train_fn(sft),
        generate_fn=graph_generate_fn(settings),
    )
    for row in stats:
        typer.echo(
            f"round {row['round']}: pool {row['pool_size']}, +{row['new_accepted']} accepted "
            f"({row['accept_rate']:.0%} of {row['generated']}), train loss {row['train_loss']}"
        )


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.add_typer(train_app, name="train")
    app.command("export")(export_cmd)
    app.command("evolve")(evolve_cmd)
