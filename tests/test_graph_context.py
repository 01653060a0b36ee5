"""Context validation and (de)serialisation."""

from __future__ import annotations

import pytest

from masksearch.errors import ConfigError
from masksearch.graph import Context


def test_defaults_are_offline():
    c = Context()
    assert c.planner_model == "local:default" and c.retriever == "bm25:default"
    assert c.judge_model is None and c.passage_cap == 10
    assert c.models() == {
        "planner": "local:default",
        "rewriter": "local:default",
        "observer": "local:default",
    }


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"planner_model": "gpt-4o"}, "planner_model"),
        ({"judge_model": "gpt-4o"}, "judge_model"),
        ({"agent_mode": "swarm"}, "agent_mode"),
        ({"retriever": " "}, "retriever"),
        ({"top_k": 0}, "top_k"),
        ({"max_turns": 1.5}, "max_turns"),
        ({"num_rewrites": True}, "num_rewrites"),
        ({"recall_threshold": 1.5}, "recall_threshold"),
        ({"temperature": -1}, "temperature"),
        ({"llm_timeout_s": 0}, "llm_timeout_s"),
        ({"seed": -1}, "seed"),
        ({"max_passages": 0}, "max_passages"),
    ],
)
def test_invalid_values_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        Context(**kw)


def test_from_dict_roundtrip_and_unknown_fields():
    c = Context(agent_mode="single_agent", judge_model="openai:gpt-4o", top_k=3)
    assert Context.from_dict(c.to_dict()) == c
    assert c.models() == {"agent": "local:default", "judge": "openai:gpt-4o"}
    with pytest.raises(ConfigError, match="topk"):
        Context.from_dict({"topk": 3})
    assert (
        c.fingerprint() == Context.from_dict(c.to_dict()).fingerprint() != Context().fingerprint()
    )
