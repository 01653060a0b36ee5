"""Error types that name where bad input was found."""

from __future__ import annotations


class MaskSearchError(Exception):
    """Base class for user-facing errors (printed without a traceback by the CLI)."""


class InputError(MaskSearchError, ValueError):
    """Malformed input, located by file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ":".join(str(p) for p in (path, line) if p is not None)
        loc = f"{where}: " if where else ""
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{loc}{fld}{message}")


class ConfigError(MaskSearchError, ValueError):
    """Invalid configuration or missing optional dependency."""


class ContextOverflow(ConfigError):
    """A prompt longer than the model's context window (`n_ctx`). The student agent then answers
    from what fits instead of failing the example (`masksearch.nodes.single_agent`)."""


class OutputError(InputError):
    """An output that cannot be written (read-only, not a regular file, disk full), located by path."""


class RunStopped(MaskSearchError):
    """A run stopped early because it could not succeed (every first model call refused the
    same way: a wrong key, an unknown model); the CLI exits with `exit_code` (3)."""

    exit_code = 3
