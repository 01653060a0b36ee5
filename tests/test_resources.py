"""`Resources`: injected objects win, loaded models are cached per spec and settings, `fake:`
scripts are reloaded when edited and fresh for each run (`for_run`)."""

from __future__ import annotations

import json
import os

import pytest

from masksearch.errors import ConfigError
from masksearch.models import load_chat_model
from masksearch.models.fake import EXAMPLE_SCRIPT, ScriptedChatModel
from masksearch.resources import Resources, model_key


def test_injected_and_cached_models(tmp_path):
    res = Resources(models={"fake:team": ScriptedChatModel(responses=["x"])})
    assert res.get_model("fake:team") is res.loaded_model("fake:team")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["a"]))
    a = res.get_model(f"fake:{script}", temperature=0.0)
    assert res.get_model(f"fake:{script}", temperature=0.0) is a  # same run, same settings
    assert res.get_model(f"fake:{script}", temperature=0.5) is not a
    # a setting left out keys like None (both build the same model); every setting counts
    assert res.get_model(f"fake:{script}", temperature=0.0, seed=None) is a
    assert res.get_model(f"fake:{script}", temperature=0.0, repetition_penalty=1.1) is not a
    with pytest.raises(ConfigError):
        res.add_retriever("r", object())
    assert Resources().loaded_model("fake:team") is None  # nothing is global


def test_model_settings_are_declared_once():
    """`ChatSettings` names what a model is built with: the context's settings, the cache key
    and `load_chat_model` all take exactly those; a misspelt one is refused, not dropped."""
    from masksearch.context import Context
    from masksearch.models import CHAT_SETTINGS

    settings = Context(temperature=0.3, seed=5).model_settings()
    assert set(settings) == set(CHAT_SETTINGS)
    assert model_key("fake:x", **settings) == ("fake:x", tuple(settings[n] for n in CHAT_SETTINGS))
    with pytest.raises(TypeError, match="temprature"):
        load_chat_model("fake:x", temprature=0.1)  # type: ignore[call-arg]


def test_fake_scripts_reload_on_edit_and_restart_per_run(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["first"]))
    shared = Resources()
    run1 = shared.for_run()
    model = run1.get_model(f"fake:{script}")
    assert model.invoke("q").content == "first"
    run2 = shared.for_run()  # the next server run: the script starts over
    assert run2.get_model(f"fake:{script}").invoke("q").content == "first"
    script.write_text(json.dumps(["edited"]))
    os.utime(script, ns=(1, 1))  # a different mtime, whatever the clock resolution
    assert run2.get_model(f"fake:{script}").invoke("q").content == "edited"


def test_shipped_example_script_streams_tokens():
    assert EXAMPLE_SCRIPT.is_file()
    model = Resources().get_model("fake:example")
    chunks = list(model.stream("You are the planner of a search team. Question: x"))
    assert len(chunks) > 5 and "".join(c.content for c in chunks).startswith("<think>")
