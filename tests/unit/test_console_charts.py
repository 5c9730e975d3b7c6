"""The console's pure parts: SVG charts, activity buckets, staleness buckets, the query
string, and the credentials check."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from sync.config.settings import load_settings
from sync.console.auth import (
    Access,
    ConsoleCredentials,
    check_binding,
    is_loopback,
    judge,
    session_value,
    token_matches,
)
from sync.console.charts import (
    Column,
    Reference,
    Series,
    format_number,
    horizontal_bars,
    nice_ceiling,
    stacked_bars,
)
from sync.console.params import BadParameter, choice, customers_query, page_at
from sync.domain.activity import DAY, HOUR, RunSample, activity, bucket_starts
from sync.domain.errors import ConfigError
from sync.domain.staleness import staleness_buckets

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]


# -- charts --------------------------------------------------------------------------------


def test_stacked_bars_are_well_formed_and_proportional() -> None:
    series = (Series("new", "ok"), Series("updated", "info"))
    columns = [Column("a", (10.0, 0.0)), Column("b", (5.0, 5.0)), Column("c", (0.0, 0.0))]
    root = parse(stacked_bars("records", columns, series))
    drawn = bars(root)
    assert len(drawn) == 3  # zero values draw nothing
    heights = [float(r.get("height")) for r in drawn]
    assert heights[0] == pytest.approx(heights[1] + heights[2])
    assert root.get("role") == "img" and root.get("aria-label") == "records"
    assert next(t.text for t in root.iter(f"{SVG}title")) == "records"


def test_reference_line_sits_at_its_value_and_raises_the_scale() -> None:
    columns = [Column("h", (2.0,))]
    root = parse(
        stacked_bars("rate", columns, (Series("req/s", "info"),), reference=Reference(10, "lim"))
    )
    (line,) = [e for e in root.iter(f"{SVG}line") if e.get("class") == "reference"]
    (bar,) = bars(root)
    bar_bottom = float(bar.get("y")) + float(bar.get("height"))
    # The scale tops at 10, so the 2 bar is a fifth of the height to the line.
    assert float(bar.get("height")) == pytest.approx((bar_bottom - float(line.get("y1"))) / 5)


def test_divider_and_labels() -> None:
    columns = [Column(str(i), (1.0,)) for i in range(6)]
    root = parse(stacked_bars("s", columns, (Series("x", "ok"),), divider_after=3, label_every=2))
    assert [e.get("class") for e in root.iter(f"{SVG}line")].count("divider") == 1
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert {"0", "2", "4"} <= set(ticks) and "1" not in ticks


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    markup = stacked_bars(hostile, [Column(hostile, (1.0,))], (Series(hostile, hostile),))
    markup += horizontal_bars(hostile, [(hostile, 3.0, hostile)])
    assert "<script>" not in markup
    for chart in (stacked_bars(hostile, [Column(hostile, (1.0,))], (Series(hostile, "x"),)),):
        assert any(t.text == hostile for t in parse(chart).iter(f"{SVG}title"))


def test_empty_and_zero_charts_draw_no_bars() -> None:
    assert bars(parse(stacked_bars("e", [], (Series("x", "ok"),)))) == []
    root = parse(horizontal_bars("z", [("a", 0.0, "ok"), ("b", 0.0, "bad")]))
    assert [float(r.get("width")) for r in bars(root)] == [0.0, 0.0]


def test_a_column_with_the_wrong_number_of_values_is_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 1 series"):
        stacked_bars("x", [Column("a", (1.0, 2.0))], (Series("x", "ok"),))


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (12, 20), (24, 25), (60_000, 100_000), (2.1, 2.5)],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_format_number() -> None:
    assert format_number(12345.0) == "12,345"
    assert format_number(0.375) == "0.38"
    assert format_number(12.25) == "12.2"


# -- activity ------------------------------------------------------------------------------

NOW = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)


def run(start: datetime, minutes: float | None, status: str = "ok", requests: int = 0) -> RunSample:
    end = None if minutes is None else start + timedelta(minutes=minutes)
    return RunSample(start, end, status, 10, 2, requests)


def test_hour_buckets_end_with_the_current_hour() -> None:
    starts = bucket_starts(NOW, HOUR, 24)
    assert len(starts) == 24 and starts[-1] == datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert starts[0] == starts[-1] - 23 * HOUR


def test_day_buckets_are_china_days() -> None:
    starts = bucket_starts(NOW, DAY, 7)
    # 12:30 UTC is 20:30 in China; that day began at 16:00 UTC the day before.
    assert starts[-1] == datetime(2026, 12, 1, 16, tzinfo=UTC)


def test_a_run_over_two_hours_is_spread_over_both() -> None:
    two_hours = run(datetime(2026, 12, 2, 10, 30, tzinfo=UTC), 60, requests=3600)
    buckets = activity([two_hours], NOW, HOUR, 24)
    by_start = {b.start.hour: b for b in buckets}
    assert by_start[10].requests == pytest.approx(1800)
    assert by_start[11].requests == pytest.approx(1800)
    assert by_start[10].passes == {"ok": 1} and by_start[11].passes == {}
    assert by_start[10].requests_per_second == pytest.approx(0.5)
    # The current hour has run for 30 minutes only: its rate is over those.
    assert by_start[12].seconds == 1800


def test_running_and_instant_runs() -> None:
    running = run(datetime(2026, 12, 2, 12, 0, tzinfo=UTC), None, "running", requests=900)
    instant = run(datetime(2026, 12, 2, 11, 15, tzinfo=UTC), 0, "partial", requests=5)
    buckets = {b.start.hour: b for b in activity([running, instant], NOW, HOUR, 24)}
    assert buckets[12].requests == pytest.approx(900) and buckets[12].passes == {"running": 1}
    assert buckets[11].requests == pytest.approx(5) and buckets[11].records_new == 10


def test_runs_outside_the_window_count_for_nothing() -> None:
    old = run(NOW - timedelta(days=3), 10, requests=100)
    buckets = activity([old], NOW, HOUR, 24)
    assert sum(b.requests for b in buckets) == 0 and all(not b.passes for b in buckets)


# -- staleness -----------------------------------------------------------------------------


def test_staleness_buckets_split_the_bound_in_four() -> None:
    buckets = staleness_buckets(6 * 3600)
    assert [b.label for b in buckets] == [
        "0s–1h30m",
        "1h30m–3h",
        "3h–4h30m",
        "4h30m–6h",
        "6h–12h",
        "12h–1d",
        "over 1d",
    ]
    assert [b.over_bound for b in buckets] == [False] * 4 + [True] * 3
    assert buckets[-1].high_s is None


# -- the query string ----------------------------------------------------------------------


def test_page_at_reads_keys_and_limits() -> None:
    at = page_at({"after": "120", "limit": "20"})
    assert (at.after, at.before, at.limit) == (120, None, 20)
    assert page_at({}).limit == 50


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"after": "1", "before": "2"}, "not both"),
        ({"after": "x"}, "after 'x': not a whole number"),
        ({"after": "-3"}, "not a row key"),
        ({"limit": "0"}, "limit 0"),
        ({"limit": "9999"}, "limit 9999"),
        ({"after": "9" * 30}, "not a whole number"),
        ({"state": "bogus"}, "state 'bogus': choose one of"),
        ({"q": "x" * 201}, "q: at most 200"),
        ({"q": "a\x00b"}, "NUL"),
    ],
)
def test_bad_parameters_are_named(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadParameter, match=message):
        customers_query(query)


def test_customers_query_and_choice() -> None:
    query = customers_query({"state": "failing", "q": "  wm01 "})
    assert (query.state, query.search) == ("failing", "wm01")
    assert choice({"mode": ""}, "mode", ("run",)) is None


# -- credentials ---------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_credentials_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"SYNC_CONSOLE_HOST: .*0\.0\.0\.0.* not a loopback"):
        check_binding("0.0.0.0", ConsoleCredentials(), "SYNC_CONSOLE_HOST")
    check_binding("127.0.0.1", ConsoleCredentials(), "SYNC_CONSOLE_HOST")
    check_binding("0.0.0.0", ConsoleCredentials(token="t"), "SYNC_CONSOLE_HOST")


def test_without_credentials_everyone_is_let_in() -> None:
    assert judge(ConsoleCredentials(), None, None) is Access.GRANTED


def test_token_by_header_and_by_cookie() -> None:
    creds = ConsoleCredentials(token="s3cret")
    assert judge(creds, "Bearer s3cret", None) is Access.GRANTED
    assert judge(creds, "bearer  s3cret ", None) is Access.GRANTED
    assert judge(creds, "Bearer wrong", None) is Access.REFUSED
    assert judge(creds, basic("a", "s3cret"), None) is Access.REFUSED  # no basic auth set
    assert judge(creds, None, session_value("s3cret")) is Access.GRANTED
    assert judge(creds, None, "s3cret") is Access.REFUSED  # the cookie is not the token
    assert judge(creds, None, session_value("other")) is Access.REFUSED
    assert judge(creds, None, None) is Access.MISSING
    assert token_matches(creds, " s3cret\n") and not token_matches(creds, "s3cre")
    assert not token_matches(ConsoleCredentials(user="u", password="p"), "")


def test_basic_auth() -> None:
    creds = ConsoleCredentials(user="ops", password="pa:ss 密码")
    assert judge(creds, basic("ops", "pa:ss 密码"), None) is Access.GRANTED
    assert judge(creds, basic("ops", "nope"), None) is Access.REFUSED
    assert judge(creds, basic("other", "pa:ss 密码"), None) is Access.REFUSED
    assert judge(creds, "Basic !!!notbase64", None) is Access.REFUSED
    assert judge(creds, "Basic " + base64.b64encode(b"\xff\xfe").decode(), None) is Access.REFUSED
    assert judge(creds, "Bearer pa:ss", None) is Access.REFUSED
    assert judge(creds, None, session_value("")) is Access.MISSING


def test_user_without_password_is_a_setting_error() -> None:
    settings = load_settings(_env_file=None, sync_console_user="ops")
    with pytest.raises(ConfigError, match="SYNC_CONSOLE_PASSWORD is not set"):
        ConsoleCredentials.from_settings(settings)
