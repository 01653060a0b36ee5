"""Type and range checks of training settings when the config is read, not when training starts.

`TrlParser.parse_dict` builds TRL's config class (`SFTConfig`, `GRPOConfig`) without checking
value types, so `learning_rate: fast` used to pass config reading and fail in the optimizer,
after the model had loaded. `check_fields` checks every given key against the dataclass field's
own annotation (read from the class itself, TRL's and ours alike: `float`, `int | None`,
`list[str] | str`, enums, `Literal[...]`) and a few lower bounds the classes do not declare
(`per_device_train_batch_size: 0` fails only inside the data loader). Each problem is one
`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any

from masksearch.errors import ConfigError

# Lower bounds by key name (TRL/transformers keys and ours): (minimum, inclusive).
_AT_LEAST_ONE = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "num_iterations",
    "max_length",
    "max_completion_length",
    "max_prompt_length",
    "topk",
    "max_turns",
    "max_turn_tokens",
    "max_obs_tokens",
    "judge_batch_size",
    "ppo_epochs",
    "mini_batch_size",
    "r",
)
_POSITIVE = (
    "learning_rate",
    "num_train_epochs",
    "temperature",
    "critic_lr",
    "judge_timeout_s",
    "logging_steps",  # an integer, or a float ratio of the run in (0, 1)
    "save_steps",
    "eval_steps",
)
_NON_NEGATIVE = ("weight_decay", "warmup_steps", "max_grad_norm", "beta", "epsilon", "dropout")
BOUNDS: dict[str, tuple[float, bool]] = {
    **{k: (1, True) for k in _AT_LEAST_ONE},
    **{k: (0, False) for k in _POSITIVE},
    **{k: (0, True) for k in _NON_NEGATIVE},
}


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """`{name: annotation}` of a dataclass's init fields (resolved where possible; a field
    whose annotation cannot be resolved is left out, i.e. not checked)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a forward reference some library left unresolved
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, f.type)
        if f.init and not isinstance(hint, str):
            out[f.name] = hint
    return out


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` (as YAML gives it) fits `hint`. Unknown kinds of annotation pass."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        enums = [a for a in args if _is_enum(a)]
        if enums and isinstance(value, str):  # `Union[SchedulerType, str]`: the enum's values
            return any(matches(value, a) for a in args if a is not str)
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if _is_enum(hint):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if origin in (list, tuple, set, frozenset, typing.Sequence):
        if not isinstance(value, list | tuple):
            return False
        inner = args[0] if args and (origin is not tuple or len(args) == 2) else Any
        return all(matches(v, inner) for v in value) if inner is not Ellipsis else True
    if hint in (list, tuple):
        return isinstance(value, list | tuple)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    return True  # a class we do not know how to check (callables, objects): the class decides


def describe(hint: Any) -> str:
    """A short reader's name for an annotation: `a float`, `an integer or null`, `one of a, b`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if any(_is_enum(a) for a in args):
            args = tuple(a for a in args if a is not str)  # (the str form of the enum)
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if _is_enum(hint):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    names = {
        type(None): "null",
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
    }
    if hint in names:
        return names[hint]
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def check_fields(cls: type, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """Raise `ConfigError` for the first key of `data` whose value does not fit `cls`'s field
    annotation or lies below its bound (`BOUNDS`). Keys `cls` does not have are skipped (the
    caller reports unknown keys); nested dataclass settings are checked by their own call."""
    hints = field_types(cls)
    for key, value in data.items():
        hint = hints.get(key)
        name = f"{prefix}{key}"
        if hint is not None and not matches(value, hint):
            raise ConfigError(
                f"{where}: setting '{name}' must be {describe(hint)}, got {value!r} "
                f"({type(value).__name__})"
            )
        bound = BOUNDS.get(key)
        if bound is not None and _is_number(value):
            low, inclusive = bound
            if value < low or (value == low and not inclusive):
                need = f"at least {low}" if inclusive else f"greater than {low}"
                raise ConfigError(f"{where}: setting '{name}' must be {need}, got {value!r}")


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
