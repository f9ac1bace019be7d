"""Log lines: one event per line, JSON parseable, no control codes from user input."""

from __future__ import annotations

import json
import logging

from services.common.logs import JsonFormatter, TextFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "WARNING", "msg": msg, "args": args})
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_lines_stay_one_line_without_control_codes():
    line = TextFormatter().format(_record("user %s rejected", "al\rice\x1b[2J\nbob", host="h1"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "user al\\x0dice\\x1b[2J | bob rejected" in line and line.endswith("host=h1")


def test_json_lines_parse_and_carry_extras():
    line = JsonFormatter().format(_record("user %s rejected", "a\nb", reason="expired"))
    body = json.loads(line)
    assert body["msg"] == "user a\nb rejected" and body["reason"] == "expired"
    assert body["level"] == "warning" and body["ts"].endswith("Z") and "\n" not in line


def test_clip_escapes_and_cuts_request_fields() -> None:
    from services.common.logs import FIELD_LIMIT, clip

    assert clip("alice") == "'alice'"
    assert clip("a\nb\x1b[31m") == "'a\\nb\\x1b[31m'"
    long = clip("x" * 900_000)
    assert len(long) < FIELD_LIMIT + 40 and long.endswith("more]")
    assert clip(42) == "'42'"
