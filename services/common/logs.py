"""Logging to stderr, one line per event, as text or JSON (`--log-format`)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# Attributes every LogRecord has; anything else came through `extra=` and is logged as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        if extras:
            text += " " + " ".join(extras)
        # One event, one line, and no terminal control codes smuggled in through user input.
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\n", " | "))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Send every log record to stderr in the chosen format, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The access log is useful at debug level only; it would double every scrape otherwise.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )


# A user name, host name or path from a request is logged at most this long (SPEC section 4).
FIELD_LIMIT = 200


def clip(value: object, limit: int = FIELD_LIMIT) -> str:
    """A request field fit for a log line: repr-escaped and cut to `limit` characters."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more]"
