"""Stop a batch whose first examples all fail the same way (`FailureStreak`).

A wrong API key (401/403), a mistyped model name (404) or a server that is not there fails
every call: without this, `generate` spends the whole input, stores every example as `failed`
and exits 0. The first `threshold` finished examples are looked at: when all of them failed
with the same recognised cause, the run stops (`RunStopped`, exit code 3) with one line naming
the cause. Any other outcome among them (a success, another kind of failure) disarms it for
the rest of the run, so a run that mostly works is never stopped by later failures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from masksearch.errors import RunStopped

# (cause, what to check, pattern over the stored error text)
CAUSES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "authentication refused (HTTP 401/403)",
        "check the API key variable for this model",
        re.compile(
            r"AuthenticationError|PermissionDeniedError|Error code: 40[13]\b|\b40[13] Unauthorized"
            r"|\b(?:invalid|incorrect) (?:api[ _-]?)?key",
            re.I,
        ),
    ),
    (
        "unknown model (HTTP 404)",
        "check the model name in the spec and the server's /v1/models",
        re.compile(
            r"NotFoundError|Error code: 404\b|model[_ ]not[_ ]found|model\b.{0,80}\bdoes not exist",
            re.I,
        ),
    ),
    (
        "the model server cannot be reached",
        "check the URL in the model spec and that the server is up",
        re.compile(r"APIConnectionError|Connection refused|ConnectError|Name or service not known"),
    ),
)
DEFAULT_THRESHOLD = 3


def failure_cause(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(cause, advice) of a failed record whose error is one every call would repeat."""
    if record.get("status") != "failed":
        return None
    error = str(record.get("error") or "")
    for cause, advice, pattern in CAUSES:
        if pattern.search(error):
            return cause, advice
    return None


class FailureStreak:
    """Watches the first `threshold` finished records of a run (`observe`); raises
    `RunStopped` when they all failed with the same cause. `threshold` 0 turns it off."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.seen = 0
        self.cause: tuple[str, str] | None = None
        self.armed = threshold > 0

    def observe(self, record: Mapping[str, Any]) -> None:
        if not self.armed:
            return
        cause = failure_cause(record)
        if cause is None or (self.cause is not None and cause != self.cause):
            self.armed = False
            return
        self.cause, self.seen = cause, self.seen + 1
        if self.seen >= self.threshold:
            self.armed = False
            error = " ".join(str(record.get("error") or "").split())
            if len(error) > 200:
                error = error[:197] + "..."
            raise RunStopped(
                f"stopped after the first {self.seen} examples all failed the same way: "
                f"{cause[0]} ({error}); {cause[1]}, then rerun with --retry-failed "
                "(they are stored as failed)"
            )
