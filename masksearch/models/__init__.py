"""Chat models from `provider:model` specs (keys only from env vars, checked when a model is loaded).

| spec | model |
|---|---|
| `openai:<model>` | OpenAI (key `OPENAI_API_KEY`) |
| `dashscope:<model>[@<base_url>]` | DashScope's OpenAI-compatible endpoint (key `DASHSCOPE_API_KEY`; default the China region, pass e.g. `@https://dashscope-intl.aliyuncs.com/compatible-mode/v1` for Singapore) |
| `openai-compatible:<model>@<base_url>` | vLLM / Ollama / any OpenAI-compatible server (key `OPENAI_API_KEY` or "EMPTY") |
| `llama-server:<model>@<base_url>` | llama.cpp's `llama-server` (`masksearch.models.llamaserver`): an OpenAI-compatible server that also decodes under the project's grammars |
| `local:default` / `local:<embedded name>` / `local:<file>.gguf` | in-process llama.cpp (`masksearch.models.llamacpp`; embedded models in `masksearch.models.embedded`) |
| `local:<dir>` | an HF checkpoint directory (e.g. a trained student) on transformers, CPU or GPU |
| `fake:<script.json>` | `ScriptedChatModel` replaying a script (tests, demos) |
"""

from __future__ import annotations

import os
from typing import Any, TypedDict, Unpack

from masksearch.errors import ConfigError

DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
PROVIDERS = ("openai", "dashscope", "openai-compatible", "llama-server", "local", "fake")


class ChatSettings(TypedDict, total=False):
    """What a chat model is built with besides its spec (`masksearch.context.Context.model_settings`;
    with the spec, the key `masksearch.resources.Resources` caches a loaded model under). None, or
    left out: the runtime's default."""

    temperature: float | None
    max_tokens: int | None
    timeout: float | None  # the HTTP client's (local models ignore it)
    seed: int | None
    top_p: float | None
    repetition_penalty: float | None


CHAT_SETTINGS = tuple(ChatSettings.__annotations__)  # in declaration order


def parse_spec(spec: str) -> tuple[str, str]:
    """`provider:model` → (provider, model); ConfigError naming the accepted providers."""
    provider, sep, name = (spec or "").partition(":")
    if not sep or not name.strip() or provider not in PROVIDERS:
        raise ConfigError(
            f"bad model spec {spec!r}: expected one of "
            f"{', '.join(p + ':<model>' for p in PROVIDERS)}"
        )
    return provider, name.strip()


def load_chat_model(spec: str, **settings: Unpack[ChatSettings]) -> Any:
    """Build a LangChain chat model for `spec`. Needs the provider's key env var (not at import).

    Sampling settings (`masksearch.student.Decoding`'s values: `temperature`, `top_p`,
    `repetition_penalty`) reach every runtime the same way; a repetition penalty other than 1
    goes to OpenAI-compatible servers and DashScope as `extra_body` (vLLM's sampling parameter)
    and is refused for OpenAI, which has none."""
    unknown = sorted(set(settings) - set(CHAT_SETTINGS))
    if unknown:
        raise TypeError(f"load_chat_model() got unknown settings: {', '.join(unknown)}")
    provider, name = parse_spec(spec)
    timeout = settings.get("timeout")
    repetition_penalty = settings.get("repetition_penalty")
    common: dict[str, Any] = {
        k: v
        for k, v in settings.items()
        if v is not None and k not in ("timeout", "repetition_penalty")
    }
    if provider == "fake":
        from masksearch.models.fake import ScriptedChatModel

        return ScriptedChatModel.from_file(name)
    if provider == "local":
        from masksearch.models.local import chat_model

        if repetition_penalty is not None:
            common["repetition_penalty"] = repetition_penalty
        return chat_model(name, **common)

    from langchain.chat_models import init_chat_model

    if timeout is not None:
        common["timeout"] = timeout
    if repetition_penalty is not None and repetition_penalty != 1.0:
        if provider == "llama-server":
            common["extra_body"] = {"repeat_penalty": repetition_penalty}
        elif provider == "openai":
            raise ConfigError(
                f"model {spec!r}: OpenAI has no repetition_penalty (set it to 1, or serve the "
                "model with vLLM: openai-compatible:<model>@<url>)"
            )
        else:
            common["extra_body"] = {"repetition_penalty": repetition_penalty}
    if provider == "openai":
        _require_env("OPENAI_API_KEY", spec)
        return init_chat_model(name, model_provider="openai", **common)
    if provider == "dashscope":
        key = _require_env("DASHSCOPE_API_KEY", spec)
        model, _, base_url = name.partition("@")
        return init_chat_model(
            model,
            model_provider="openai",
            base_url=base_url or DASHSCOPE_BASE_URL,
            api_key=key,
            **common,
        )
    model, at, base_url = name.rpartition("@")
    if "://" in model:  # user:password@host in the URL (the error line redacts the password)
        raise ConfigError(
            f"bad model spec {spec!r}: no credentials in the URL; the key comes from "
            f"OPENAI_API_KEY ({provider}:<model>@http(s)://host:port/v1)"
        )
    if not at or not model or not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"bad model spec {spec!r}: expected {provider}:<model>@http(s)://host:port/v1"
        )
    key = os.environ.get("OPENAI_API_KEY") or "EMPTY"
    if provider == "llama-server":
        from pydantic import SecretStr

        from masksearch.models.llamaserver import LlamaServerChatModel

        return LlamaServerChatModel(
            model=model, base_url=base_url, api_key=SecretStr(key), **common
        )
    return init_chat_model(model, model_provider="openai", base_url=base_url, api_key=key, **common)


def _require_env(var: str, spec: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value:
        raise ConfigError(f"model {spec!r} needs the environment variable {var} (not set)")
    return value


def output_format_kwargs(model: Any, output_format: str | None) -> dict[str, Any]:
    """Call kwargs asking `model` for an output format (`masksearch.grammars`): the format itself
    for models that decode under grammars (`supports_output_format`), JSON mode for the JSON
    formats on OpenAI-compatible APIs (OpenAI, DashScope, vLLM), nothing otherwise (the caller's
    tag/JSON parser is the fallback)."""
    if not output_format:
        return {}
    if getattr(model, "supports_output_format", False):
        return {"output_format": output_format}
    from masksearch.grammars import json_schema_for

    if json_schema_for(output_format) is not None and hasattr(model, "openai_api_base"):
        return {"response_format": {"type": "json_object"}}
    return {}
