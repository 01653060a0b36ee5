"""Model specs, the scripted fake (fault injection) and, when slow tests run, the local model."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from masksearch.errors import ConfigError
from masksearch.models import DASHSCOPE_BASE_URL, load_chat_model, parse_spec
from masksearch.models.fake import ScriptedChatModel, ScriptExhausted, http_error, route_by_prompt
from masksearch.nodes.common import is_transient


def test_scripted_list_usage_and_exhaustion():
    m = ScriptedChatModel(responses=["one two", ""])
    r = m.invoke([HumanMessage("hi there")])
    assert r.content == "one two" and r.usage_metadata["output_tokens"] == 2
    assert r.usage_metadata["input_tokens"] == 2
    assert m.invoke("x").content == ""  # empty output is a valid scripted reply
    with pytest.raises(ScriptExhausted):
        m.invoke("again")
    assert len(m.calls) == 3


async def test_scripted_async_errors_and_routing():
    m = ScriptedChatModel(
        respond=route_by_prompt({"alpha": ["A1", http_error(429)], "beta": ["B1"]}, default=["D"])
    )
    assert (await m.ainvoke([SystemMessage("sys"), HumanMessage("alpha?")])).content == "A1"
    with pytest.raises(httpx.HTTPStatusError) as err:
        await m.ainvoke("alpha again")
    assert err.value.response.status_code == 429 and is_transient(err.value)
    assert (await m.ainvoke("beta")).content == "B1"
    assert (await m.ainvoke("gamma")).content == "D"
    with pytest.raises(ScriptExhausted):
        await m.ainvoke("gamma")


def test_scripted_callable_stop_and_bind_tools():
    m = ScriptedChatModel(responses=[lambda msgs: f"<search>{msgs[-1].content}</search> tail"])
    assert m.bind_tools([{"name": "search"}]) is m and m.bound_tools == [{"name": "search"}]
    assert m.invoke("q", stop=["</search>"]).content == "<search>q"


def test_is_transient_classification():
    assert is_transient(TimeoutError()) and is_transient(httpx.ConnectTimeout("slow"))
    assert is_transient(ConnectionResetError()) and is_transient(http_error(500))
    assert is_transient(http_error(429)) and not is_transient(http_error(400))
    assert not is_transient(ValueError("parse")) and not is_transient(ConfigError("x"))


def test_fake_spec_from_file(tmp_path):
    script = tmp_path / "s.json"
    script.write_text(
        json.dumps({"routes": {"plan": ["P"], "obs": [{"error": 503}]}, "default": ["D"]})
    )
    m = load_chat_model(f"fake:{script}")
    assert m.invoke("plan it").content == "P"
    with pytest.raises(httpx.HTTPStatusError):
        m.invoke("obs")
    cyc = tmp_path / "c.json"
    cyc.write_text(json.dumps({"routes": {"x": ["1", "2"]}, "cycle": True}))
    m2 = load_chat_model(f"fake:{cyc}")
    assert [m2.invoke("x").content for _ in range(3)] == ["1", "2", "1"]
    with pytest.raises(ConfigError):
        load_chat_model(f"fake:{tmp_path / 'missing.json'}")


@pytest.mark.parametrize("spec", ["gpt-4o", "nope:model", "openai:", ""])
def test_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_spec(spec)


def test_keys_checked_at_load_not_import(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        load_chat_model("dashscope:qwen-max")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        load_chat_model("openai:gpt-4o-mini")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "k-dash")
    m = load_chat_model("dashscope:qwen-max", temperature=0.0, max_tokens=64, timeout=5, seed=1)
    assert m.model_name == "qwen-max" and str(m.openai_api_base) == DASHSCOPE_BASE_URL
    assert m.max_tokens == 64 and m.seed == 1
    intl = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    m = load_chat_model(f"dashscope:qwen-plus@{intl}")
    assert m.model_name == "qwen-plus" and str(m.openai_api_base) == intl


def test_openai_compatible_spec(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    m = load_chat_model("openai-compatible:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8001/v1")
    assert (
        m.model_name == "Qwen/Qwen2.5-7B-Instruct"
        and m.openai_api_base == "http://127.0.0.1:8001/v1"
    )
    assert m.openai_api_key.get_secret_value() == "EMPTY"
    with pytest.raises(ConfigError):
        load_chat_model("openai-compatible:model-without-url")


def test_local_embedded_model_generates_offline():
    m = load_chat_model("local:smollm2-135m", max_tokens=24)
    r = m.invoke([HumanMessage("What is the capital of France? Answer in one sentence.")])
    assert "Paris" in r.content
    assert r.usage_metadata["input_tokens"] > 5 and 0 < r.usage_metadata["output_tokens"] <= 24
    r2 = m.invoke([HumanMessage("Write the word apple then the word banana.")], stop=["banana"])
    assert "banana" not in r2.content.lower()
