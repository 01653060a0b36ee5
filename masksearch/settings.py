"""Settings dataclasses filled from a command's parsed options.

A command names each option after the settings field it sets (the flag may differ: the Python
name of `--calibrate` is `calibrate_on`), so the settings object a library function takes is built
in one call from `typer.Context.params`, not from a keyword list that repeats every name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound="DataclassInstance")


def settings_from(cls: type[S], options: Mapping[str, Any], **given: Any) -> S:
    """`cls(...)` with each field from `given`, else from the option of the same name; a field
    with neither keeps its default. Options that are not fields are left out."""
    names = {f.name for f in fields(cls) if f.init}
    unknown = set(given) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    values = {name: options[name] for name in names if name in options}
    return cls(**(values | given))
