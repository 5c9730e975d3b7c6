"""The app key never reaches a log line, and scrubbing does not mangle the rest."""

from __future__ import annotations

import io
import json
import sys

import structlog

from sync.cli.logs import REDACTED, SecretScrubber, configure_logging

KEY = "k3y-0f-the-app-9f8e7d"


def scrub(secrets: list[str], **event: object) -> dict[str, object]:
    return SecretScrubber(secrets)(None, "info", dict(event))


def test_the_key_is_scrubbed_wherever_it_appears() -> None:
    event = scrub([KEY], event="retrying", reason=f"sign={KEY}!", nested={"k": KEY}, n=3)
    assert event["reason"] == f"sign={REDACTED}!"
    assert KEY not in json.dumps(event)
    assert event["n"] == 3


def test_a_short_key_is_scrubbed_only_as_a_whole_value() -> None:
    event = scrub(["k"], event="pass_finished", status="ok", mode="backfill", key="k")
    assert event == {"event": "pass_finished", "status": "ok", "mode": "backfill", "key": REDACTED}


def test_rendered_lines_carry_no_key(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("json", "debug", secrets=[KEY])
    structlog.get_logger("t").warning("oops", detail=f"header appKey: {KEY}")
    configure_logging("json", "warning")
    line = json.loads(stream.getvalue())
    assert line["event"] == "oops" and KEY not in stream.getvalue()
