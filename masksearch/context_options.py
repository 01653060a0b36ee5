"""Command-line options for every `Context` field, generated from the dataclass.

Every command that runs the graph (`generate`, `run`, `chat`, `eval run`) takes its graph settings
through `context_options`, so each `Context` field is settable from each of them under the same
name (`top_k` → `--top-k`), with the field's description as help. `--model` sets every role;
`--planner-model` overrides it for the planner (THE model in single_agent mode), and
`--rewriter-model`/`--observer-model` default to the planner's model.

    @app.command()
    @context_options(defaults={"max_turns": 2})
    def chat(context: Context) -> None: ...

The decorated function receives the validated `Context` as `context`; a bad value is a
`ConfigError` (one line, exit code 2).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Annotated, Any, TypeVar

import typer

from masksearch.context import DEFAULT_MODEL, Context
from masksearch.resources import Resources

ROLE_MODELS = ("planner_model", "rewriter_model", "observer_model")
MODEL_HELP = (
    "Model spec for every role: openai:<m>, dashscope:<m>, openai-compatible:<m>@<url>, "
    "llama-server:<m>@<url>, local:default|<path>, fake:<script.json>."
)
_ROLE_HELP = {
    "planner_model": "Planner model, THE model in single_agent mode (default: --model).",
    "rewriter_model": "Rewriter model (default: the planner's).",
    "observer_model": "Observer model (default: the planner's).",
}
# fields only an interactive command (chat) takes: a batch has its own store (`generate --store`)
INTERACTIVE_ONLY = frozenset({"save"})
F = TypeVar("F", bound=Callable[..., Any])


def option_name(field_name: str) -> str:
    """`top_k` → `--top-k`."""
    return "--" + field_name.replace("_", "-")


def _field_help(name: str, metadata: Mapping[str, Any]) -> str:
    if name in ROLE_MODELS:
        return _ROLE_HELP[name]
    return str(metadata.get("description") or "")


def context_parameters(
    *,
    defaults: Mapping[str, Any] | None = None,
    exclude: Collection[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> list[inspect.Parameter]:
    """Keyword-only typer parameters: `model` plus one per `Context` field not in `exclude`."""
    defaults, aliases = dict(defaults or {}), dict(aliases or {})
    hints = typing.get_type_hints(Context)
    params: list[inspect.Parameter] = []
    if not set(ROLE_MODELS) <= set(exclude):
        decl = [option_name("model"), *aliases.get("model", ())]
        params.append(
            inspect.Parameter(
                "model",
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults.get("model", DEFAULT_MODEL),
                annotation=Annotated[str, typer.Option(*decl, help=MODEL_HELP)],
            )
        )
    for f in fields(Context):
        if f.name in exclude:
            continue
        annotation = hints[f.name]
        if f.name in ROLE_MODELS:
            annotation, default = str | None, None
        else:
            default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        decl = [option_name(f.name), *aliases.get(f.name, ())]
        help_text = _field_help(f.name, f.metadata)
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, typer.Option(*decl, help=help_text)],
            )
        )
    return params


def context_from_options(
    values: dict[str, Any], *, fixed: Mapping[str, Any] | None = None
) -> Context:
    """Pop the context options out of `values` (a command's keyword arguments) → `Context`.
    `fixed` holds fields the command sets itself (excluded from its options)."""
    model = values.pop("model", None)
    settings: dict[str, Any] = dict(fixed or {})
    for f in fields(Context):
        if f.name in values:
            settings[f.name] = values.pop(f.name)
    # planner ← --model; rewriter and observer ← the planner's model
    if settings.get("planner_model") is None:
        settings["planner_model"] = model
    for role in ROLE_MODELS[1:]:
        if settings.get(role) is None:
            settings[role] = settings["planner_model"]
    for role in ROLE_MODELS:
        if settings[role] is None:
            del settings[role]  # nothing given: Context's default
    return Context(**settings)


def context_options(
    *,
    defaults: Mapping[str, Any] | None = None,
    exclude: Collection[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
    fixed: Mapping[str, Any] | None = None,
    param: str = "context",
    interactive: bool = False,
) -> Callable[[F], F]:
    """Decorator for a typer command: adds the `Context` options (see the module docstring) and
    calls the command with the built `Context` as `param`. `defaults` changes an option's default
    for this command, `exclude` leaves fields out (the command sets them itself, e.g. through
    `fixed`), `aliases` adds short or legacy names (`{"retriever": ["-r"]}`). `INTERACTIVE_ONLY`
    fields (`save`) are options of `interactive` commands only."""
    if not interactive:
        exclude = {*exclude, *INTERACTIVE_ONLY}

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != param]
        extra = context_parameters(defaults=defaults, exclude=exclude, aliases=aliases)
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            kwargs[param] = context_from_options(values, fixed=fixed)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            k: v for k, v in typing.get_type_hints(fn, include_extras=True).items() if k != param
        }
        return typing.cast(F, wrapper)

    return decorate


def command_resources(ctx: typer.Context) -> Resources:
    """The `Resources` of this CLI invocation: the one a program embedding the CLI passed as the
    typer app's `obj` (`masksearch.cli.run(argv, resources=...)`; test drivers inject models and
    retrievers this way), else a fresh one."""
    found = ctx.find_object(Resources)
    return found if found is not None else Resources()
