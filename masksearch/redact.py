"""Keep secrets out of everything the project stores or prints.

`redact(text)` removes the value of every configured secret (`OPENAI_API_KEY`,
`DASHSCOPE_API_KEY` and any environment variable named `*_API_KEY`, `*_TOKEN`, `*_SECRET` or
`*_PASSWORD`), anything shaped like a bearer key (`sk-…`, `Bearer …`, `Authorization: …`), the
password of a `scheme://user:password@host` URL and secret-named query values (`?api_key=…`).
It is applied where text leaves the process: model errors as they are raised (so graph state,
checkpoints, store rows, exports and summaries never see the key), the store's row writer, the
CLI's error line, and a logging filter on the root handlers.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

REDACTED = "[REDACTED]"
_SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|^OPENAI_API_KEY|^DASHSCOPE_API_KEY)$")
_MIN_SECRET_CHARS = 6  # shorter values ("1", "true") would redact ordinary words
_PATTERNS = re.compile(
    r"\bsk-[A-Za-z0-9_\-*.]{6,}"  # OpenAI / DashScope style keys (also partly starred echoes)
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{6,}"
    r"|(?i:\bauthorization[\"']?\s*[:=]\s*[\"']?(?:basic\s+|token\s+)?)[A-Za-z0-9._~+/=\-]{8,}"
)


# `scheme://user:PASSWORD@host` (a model or store URL) and `?api_key=…`-style query values
_URL_PASSWORD = re.compile(
    r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:'\"]*:)([^\s/'\"]+)(?=@[^\s/@'\"]*(?:[/\s'\"?#]|$))"
)
_URL_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api[_-]?key|key|token|access_token|password|passwd|secret|sig)=)([^&#\s'\"]+)"
)


def redact_url_credentials(text: str, mask: str = REDACTED) -> str:
    """`text` with the password of every `scheme://user:password@host` URL and the value of
    secret-named query parameters (`api_key=`, `token=`, `password=`…) replaced by `mask`."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + mask, text)
    return _URL_QUERY_SECRET.sub(lambda m: m.group(1) + mask, text)


_secrets_cache: tuple[Any, list[str]] | None = None  # (the environment it was read from, secrets)


def configured_secrets() -> list[str]:
    """Values of the secret-looking environment variables, longest first.

    Read again only when the environment changed since the last call (a snapshot of its raw
    entries is compared: ~1 µs instead of ~35 µs to decode and match every variable; every
    store row is redacted)."""
    global _secrets_cache
    raw = getattr(os.environ, "_data", None)  # CPython's encoded entries
    snapshot = tuple(raw.items()) if isinstance(raw, dict) else None
    if snapshot is not None and _secrets_cache is not None and _secrets_cache[0] == snapshot:
        return list(_secrets_cache[1])
    values = {
        v.strip()
        for k, v in os.environ.items()
        if _SECRET_ENV.search(k.upper()) and v and len(v.strip()) >= _MIN_SECRET_CHARS
    }
    found = sorted(values, key=len, reverse=True)
    if snapshot is not None:
        _secrets_cache = (snapshot, found)
    return list(found)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every configured secret and bearer-shaped key replaced by `[REDACTED]`
    (`secrets`: precomputed `configured_secrets()`, for many calls in a row)."""
    if not text:
        return text
    for secret in configured_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text or "=" in text:
        text = redact_url_credentials(text)
    # every pattern needs one of these words: skip the (slow, per-position) regex without them
    lower = text.lower()
    if "sk-" not in lower and "bearer" not in lower and "authorization" not in lower:
        return text
    return _PATTERNS.sub(REDACTED, text)


def redactor() -> Callable[[str], str]:
    """`redact` with the configured secrets read once (for writing many lines)."""
    secrets = configured_secrets()
    return lambda text: redact(text, secrets)


def redact_obj(obj: Any) -> Any:
    """`redact` applied to every string inside dicts/lists/tuples (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def redact_exception(exc: BaseException) -> BaseException:
    """Scrub secrets from an exception's message in place (its class is kept, so retry rules
    that look at the type still apply); returns it for `raise`."""
    try:
        if any(isinstance(a, str) and redact(a) != a for a in exc.args):
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        for attr in ("message", "body", "text"):
            value = getattr(exc, attr, None)
            if isinstance(value, str) and redact(value) != value:
                setattr(exc, attr, redact(value))
    except (AttributeError, TypeError):  # read-only attributes: the message is still scrubbed
        pass
    return exc


class RedactingFilter(logging.Filter):
    """Logging filter that renders each record's message and redacts it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as is
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            redact_exception(record.exc_info[1])
            record.exc_text = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a `RedactingFilter` to every handler of `logger` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
