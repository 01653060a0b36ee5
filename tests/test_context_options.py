"""Every Context field is a command-line option of every command that runs the graph."""

from __future__ import annotations

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from masksearch.cli import app
from masksearch.context import Context
from masksearch.context_options import context_options, option_name

runner = CliRunner()


def test_options_build_the_context_with_role_fallback_and_defaults():
    cmd = typer.Typer()
    seen = {}

    @cmd.command()
    @context_options(defaults={"max_turns": 2}, exclude={"retriever"}, fixed={"retriever": "web"})
    def go(name: str = "x", context: Context = None) -> None:  # type: ignore[assignment]
        seen["ctx"], seen["name"] = context, name

    out = runner.invoke(
        cmd, ["--name", "y", "--model", "fake:a", "--observer-model", "fake:b", "--top-k", "7"]
    )
    assert out.exit_code == 0, out.output
    ctx = seen["ctx"]
    assert seen["name"] == "y" and ctx.retriever == "web" and ctx.max_turns == 2
    assert (ctx.planner_model, ctx.rewriter_model, ctx.observer_model) == (
        "fake:a",
        "fake:a",
        "fake:b",
    )
    assert ctx.top_k == 7 and ctx.seed == Context().seed
    assert "--retriever" not in runner.invoke(cmd, ["--help"]).output
    bad = runner.invoke(cmd, ["--top-k", "0"])
    assert bad.exit_code != 0 and "top_k" in str(bad.exception)


@pytest.mark.parametrize(
    "command,left_out",
    [
        (["chat"], set()),
        # a batch cannot answer review interrupts, and writes its own store (--store), so no
        # --save (an interactive-only setting) in any of the batch commands
        (["generate"], {"review_queries", "save"}),
        # run builds its index; its --max-passages is the corpus size
        (["run"], {"retriever", "max_passages", "save"}),
        # the method sets the agent mode; --judge-model is eval's own judge; no acceptance step
        (
            ["eval", "run"],
            {"agent_mode", "judge_model", "recall_threshold", "review_queries", "save"},
        ),
        # evolve's teacher is each round's model, in single_agent mode (--model is the base model)
        (
            ["evolve"],
            {
                "planner_model",
                "rewriter_model",
                "observer_model",
                "agent_mode",
                "review_queries",
                "save",
            },
        ),
    ],
)
def test_every_context_field_is_an_option(command, left_out):
    help_text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output
    for f in fields(Context):
        if f.name not in left_out:
            assert option_name(f.name) in help_text, (command, f.name)
    assert ("--save" in help_text) == (command == ["chat"])
    assert "--model" in help_text
