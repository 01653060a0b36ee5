"""`models.invoke.ainvoke_chat`: the same reply as `ainvoke`; the direct call only when nothing
would observe the call (callbacks, tracing, LangGraph's token stream, rate limiter, cache)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import RunnableLambda

from masksearch.models.invoke import ainvoke_chat, direct_call_ok


class EchoModel(BaseChatModel):
    """Replies with the last message's text upper-cased; generation info and llm_output set,
    so the reply's `response_metadata` shows the merge `ainvoke` does."""

    direct: int = 0

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.direct += run_manager is None
        text = str(messages[-1].content).upper() + (f" stop={stop}" if stop else "")
        msg = AIMessage(
            content=text,
            response_metadata={"model_name": "echo-1"},
            usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        )
        return ChatResult(
            generations=[
                ChatGeneration(message=msg, generation_info={"finish_reason": "stop", **kw})
            ],
            llm_output={"system_fingerprint": "fp"},
        )


class Seen(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.starts = 0

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1


def _same_reply(a: BaseMessage, b: BaseMessage) -> None:
    assert (a.content, a.response_metadata, a.usage_metadata) == (
        b.content,
        b.response_metadata,
        b.usage_metadata,
    )


async def test_direct_call_gives_the_reply_ainvoke_gives():
    model = EchoModel()
    msgs = [HumanMessage("where is it")]
    via_lc = await model.ainvoke(msgs, stop=["</search>"], temperature=0.5)
    assert model.direct == 0
    direct = await ainvoke_chat(model, msgs, stop=["</search>"], temperature=0.5)
    assert model.direct == 1  # no callback run was opened
    _same_reply(direct, via_lc)
    assert direct.response_metadata == {
        "system_fingerprint": "fp",
        "finish_reason": "stop",
        "temperature": 0.5,
        "model_name": "echo-1",
    }


async def test_an_observed_call_goes_through_ainvoke():
    """Each listener keeps the call on `ainvoke`, where it sees it."""
    msgs = [HumanMessage("q")]
    handler = Seen()
    model = EchoModel()

    async def call(m: list[BaseMessage]) -> BaseMessage:
        return await ainvoke_chat(model, m)

    runnable = RunnableLambda(call)  # a traced parent run, as a LangGraph node is
    await runnable.ainvoke(msgs, config={"callbacks": [handler]})
    assert handler.starts == 1 and model.direct == 0

    with_callback = EchoModel(callbacks=[handler])
    await ainvoke_chat(with_callback, msgs)
    assert handler.starts == 2 and with_callback.direct == 0

    limited = EchoModel(rate_limiter=InMemoryRateLimiter(requests_per_second=100))
    assert not direct_call_ok(limited, msgs, {})
    assert not direct_call_ok(EchoModel(cache=True), msgs, {})
    assert not direct_call_ok(EchoModel(), msgs, {"stream": True})
    assert not direct_call_ok(EchoModel(output_version="v1"), msgs, {})
    assert not direct_call_ok(EchoModel().bind(stop=["x"]), msgs, {})  # a binding: its kwargs
    blocks = [HumanMessage(content=[{"type": "text", "text": "q"}])]
    assert not direct_call_ok(EchoModel(), blocks, {})  # content blocks are normalized first
    assert direct_call_ok(EchoModel(), msgs, {})


async def test_a_callback_hook_keeps_the_call_on_ainvoke():
    """Context-var hooks (`collect_runs`, `get_usage_metadata_callback`; LangSmith tracing is
    added by the same `configure` step) see the call."""
    from langchain_core.callbacks import get_usage_metadata_callback
    from langchain_core.tracers.context import collect_runs

    msgs = [HumanMessage("q")]
    model = EchoModel()
    with collect_runs() as runs:
        await ainvoke_chat(model, msgs)
    assert len(runs.traced_runs) == 1 and model.direct == 0
    with get_usage_metadata_callback() as usage:
        await ainvoke_chat(model, msgs)
    assert usage.usage_metadata and model.direct == 0
    await ainvoke_chat(model, msgs)
    assert model.direct == 1
