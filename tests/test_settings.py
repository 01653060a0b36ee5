"""`settings.settings_from`: a settings dataclass filled from a command's parsed options, and the
commands that use it name their options after the fields (a renamed option would otherwise
silently fall back to the field's default)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest
import typer.main

from masksearch.cli import app
from masksearch.masking.runner import MaskSettings
from masksearch.masking.select import MaskConfig
from masksearch.pipeline.runner import RunSettings
from masksearch.retrievers.build import IndexSettings
from masksearch.settings import settings_from


@dataclass(frozen=True)
class Demo:
    kind: str = "bm25"
    words: int = 100
    limit: int | None = None


def test_fields_come_from_options_given_wins_and_other_options_are_left_out():
    s = settings_from(Demo, {"kind": "dense", "limit": 3, "quiet": True}, limit=5)
    assert s == Demo(kind="dense", words=100, limit=5)  # words: default; quiet: not a field


def test_an_unknown_given_field_is_refused():
    with pytest.raises(TypeError, match="no field wrods"):
        settings_from(Demo, {}, wrods=3)


@pytest.mark.parametrize(
    ("command", "cls", "given"),
    [
        ("index", IndexSettings, set()),
        ("mask", MaskSettings, {"config", "strategy_options"}),
        ("mask", MaskConfig, set()),
        ("generate", RunSettings, {"limits"}),
    ],
)
def test_each_field_is_an_option_of_the_command(command, cls, given):
    params = {p.name for p in typer.main.get_command(app).commands[command].params}
    assert {f.name for f in fields(cls)} - given <= params
