"""Chat-template rendering that knows which tokens the model generated.

SFT labels and RL rollouts are built from the same segments: the conversation is rendered with
the tokenizer's own chat template, cut at turn boundaries (found by rendering prefixes), and each
segment is tokenized on its own, so token ids and loss labels line up by construction (no
offset mapping, no retokenisation of the whole string). Only assistant content plus its
end-of-turn token is trainable; system, user and tool (`<information>`) text is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from masksearch.errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


class ChatRenderer:
    """Wraps a tokenizer with a chat template. `tool_role` is the role our `tool` turns are rendered
    with: "user" by default, because the graph sends retrieved text back to the model as a user
    turn (so training and inference see the same tokens); "tool" for a template's native tool role."""

    def __init__(self, tokenizer: Any, *, tool_role: str = "user") -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "the tokenizer has no chat template; set `chat_template` in the config"
            )
        self.tok = tokenizer
        self.tool_role = tool_role
        self.eos_text = tokenizer.eos_token or ""

    # -- rendering -------------------------------------------------------------------------
    def _msgs(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in messages:
            m = {"role": m["role"], "content": m["content"]}
            if m["role"] == "tool" and self.tool_role != "tool":
                m["role"] = self.tool_role
            out.append(m)
        return out

    def render(self, messages: list[dict[str, Any]], *, generation_prompt: bool = False) -> str:
        text: str = self.tok.apply_chat_template(
            self._msgs(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
        return text

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) if text else []

    # -- SFT ---------------------------------------------------------------------------------
    def segments(self, messages: list[dict[str, Any]]) -> list[Segment]:
        """The rendered conversation cut into trainable (assistant) and frozen segments."""
        full = self.render(messages)
        segs: list[Segment] = []
        pos = 0
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], generation_prompt=True)
            upto = self.render(messages[: i + 1])
            if not (full.startswith(upto) and upto.startswith(before) and len(before) >= pos):
                raise ConfigError(
                    "the chat template is not prefix-preserving (it rewrites earlier turns, e.g. "
                    "drops <think> from history); use a template that renders each turn as-is"
                )
            start, end = (
                len(before),
                len(before) + self._trainable_length(upto[len(before) :], m["content"]),
            )
            segs.append(Segment(full[pos:start], False))
            segs.append(Segment(full[start:end], True))
            pos = end
        segs.append(Segment(full[pos:], False))
        return [s for s in segs if s.text]

    def _trainable_length(self, delta: str, content: str) -> int:
        """Length of the assistant turn's own text in `delta`: content and its end-of-turn token."""
        body = content.strip()
        at = delta.find(body)
        if at < 0:
            raise ConfigError(
                "the chat template altered an assistant turn's content; cannot locate it"
            )
        end = at + len(body)
        if self.eos_text:
            eos_at = delta.find(self.eos_text, end)
            if eos_at >= 0 and not delta[end:eos_at].strip():
                end = eos_at + len(self.eos_text)
        return end

    def tokenize_conversation(
        self, messages: list[dict[str, Any]], *, max_length: int | None = None
    ) -> dict[str, list[int]]:
        """`input_ids` and `labels` (-100 outside assistant turns), truncated to `max_length`."""
        ids: list[int] = []
        labels: list[int] = []
        for seg in self.segments(messages):
            seg_ids = self.encode(seg.text)
            ids += seg_ids
            labels += seg_ids if seg.trainable else [IGNORE_INDEX] * len(seg_ids)
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        return {"input_ids": ids, "labels": labels}

    # -- RL ------------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        return self.encode(self.render(messages, generation_prompt=True))

    def continuation_ids(
        self,
        history: list[dict[str, Any]],
        assistant_text: str,
        tool_text: str,
        *,
        ended_with_eos: bool,
        role: str = "tool",
    ) -> list[int]:
        """Token ids the environment appends after a generated assistant turn: the template's
        end-of-turn glue (minus the EOS the model already produced), the tool (or `role`) turn,
        and the next generation prompt. `history` is everything before the assistant turn."""
        asst = {"role": "assistant", "content": assistant_text}
        tool = {"role": role, "content": tool_text}
        before = self.render(history, generation_prompt=True)
        upto = self.render([*history, asst])
        nxt = self.render([*history, asst, tool], generation_prompt=True)
        if not nxt.startswith(upto):
            raise ConfigError("the chat template is not prefix-preserving across a tool turn")
        delta = upto[len(before) :]
        body = assistant_text.strip()
        at = delta.find(body)
        if at < 0:
            raise ConfigError(
                "the chat template altered an assistant turn's content; cannot locate it"
            )
        glue = delta[at + len(body) :]
        if ended_with_eos and self.eos_text and glue.lstrip().startswith(self.eos_text):
            glue = glue.lstrip()[len(self.eos_text) :]
        return self.encode(glue + nxt[len(upto) :])

    def end_ids(self) -> list[int]:
        """What closes an answer turn that stopped on `</answer>` instead of EOS."""
        return self.encode(self.eos_text)
