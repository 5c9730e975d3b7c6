"""The daemon's scheduling maths: cadences, the adaptive poll interval, the staleness bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.daemon.daemon import daemon_schedule
from sync.daemon.schedule import (
    DaemonSchedule,
    PollPolicy,
    crontab_weekdays,
    next_due,
    next_interval,
    parse_cadence,
    rate_share,
    retry_due,
)
from sync.domain.errors import ConfigError
from tests.helpers import make_settings

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(min_interval=900, max_interval=4 * 3600, max_staleness=6 * 3600)


@pytest.mark.parametrize(
    ("text", "gap"),
    [("15m", 900), ("90s", 90), ("1h30m", 5400), ("*/5 * * * *", 300), ("0 3 * * 0", 604800)],
)
def test_cadences_parse_with_their_longest_gap(text: str, gap: float) -> None:
    assert parse_cadence(text, "Asia/Shanghai").longest_gap_s == gap


def test_an_irregular_cron_reports_its_longest_gap() -> None:
    # 09:00 and 18:00 on weekdays: the longest gap is Friday 18:00 to Monday 09:00.
    cadence = parse_cadence("0 9,18 * * 1-5", "UTC")
    assert cadence.longest_gap_s == timedelta(days=2, hours=15).total_seconds()


def test_a_sunday_crontab_fires_on_sunday_in_china_time() -> None:
    # APScheduler counts weekdays from Monday; the crontab meaning (0 = Sunday) must win.
    trigger = parse_cadence("0 3 * * 0", "Asia/Shanghai").trigger
    fire = trigger.get_next_fire_time(None, T0)
    assert fire.strftime("%A %H:%M %z") == "Sunday 03:00 +0800"


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("sat,sun", "sun,sat"),
        ("mon-wed", "mon,tue,wed"),
    ],
)
def test_crontab_weekdays_keep_their_crontab_meaning(field: str, days: str) -> None:
    assert crontab_weekdays(field) == days


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty schedule"),
        ("0s", "longer than zero"),
        ("soon", "neither an interval"),
        ("*/5 * * *", "five fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 3 * * 8", "day-of-week"),
    ],
)
def test_bad_cadences_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_cadence(text, "UTC")


def schedule_of(**settings: object) -> DaemonSchedule:
    return daemon_schedule(make_settings("http://x", "sqlite:///x.db", **settings))


def test_daemon_settings_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="SYNC_SCHEDULE: 'whenever'"):
        schedule_of(sync_schedule="whenever")
    with pytest.raises(ConfigError, match="SYNC_FULL_SCHEDULE"):
        schedule_of(sync_full_schedule="* * *")
    with pytest.raises(ConfigError, match=r"SYNC_MAX_STALENESS .* must be longer"):
        schedule_of(sync_schedule="1h", sync_max_staleness="30m")
    with pytest.raises(ConfigError, match="SYNC_POLL_MAX_INTERVAL"):
        schedule_of(sync_poll_max_interval="1m")
    with pytest.raises(ConfigError, match="SYNC_SCHEDULE_TIMEZONE"):
        make_settings("http://x", "sqlite:///x.db", sync_schedule_timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="SYNC_HTTP_LISTEN"):
        make_settings("http://x", "sqlite:///x.db", sync_http_listen="9477")


def test_settings_do_not_parse_the_daemon_schedules() -> None:
    """Only the daemon needs them: other commands run whatever SYNC_SCHEDULE says."""
    make_settings("http://x", "sqlite:///x.db", sync_schedule="whenever")


def test_daemon_setting_values_read_as_documented() -> None:
    settings = make_settings(
        "http://x", "sqlite:///x.db", sync_full_schedule="off", sync_http_listen="[::1]:9000"
    )
    schedule = daemon_schedule(settings)
    assert schedule.full is None
    assert settings.http_listen_address == ("::1", 9000)
    assert (
        make_settings("http://x", "sqlite:///x.db", sync_http_listen="off").http_listen_address
        is None
    )
    assert schedule.policy == PollPolicy(900, 4 * 3600, 6 * 3600)


def test_the_interval_halves_on_news_and_doubles_on_quiet_within_bounds() -> None:
    assert next_interval(POLICY, None, found_new=False) == 1800
    assert next_interval(POLICY, 3600, found_new=False) == 7200
    assert next_interval(POLICY, 3 * 3600, found_new=False) == 4 * 3600  # the cap
    assert next_interval(POLICY, 3600, found_new=True) == 1800
    assert next_interval(POLICY, 1000, found_new=True) == 900  # the floor: the sweep gap


def test_due_time_follows_the_interval_when_the_bound_allows() -> None:
    assert next_due(POLICY, T0, 3600, last_success=T0) == T0 + timedelta(hours=1)
    spread = next_due(POLICY, T0, 3600, last_success=T0, spread=1.0)
    assert spread == T0 + timedelta(hours=1, minutes=6)  # jitter: a tenth of the interval


def test_the_staleness_bound_wins_over_a_long_interval() -> None:
    long_ago = T0 - timedelta(hours=5)
    due = next_due(POLICY, T0, 4 * 3600, last_success=long_ago)
    assert due - long_ago <= timedelta(seconds=POLICY.max_staleness - POLICY.min_interval)
    overdue = next_due(POLICY, T0, 4 * 3600, last_success=T0 - timedelta(hours=7))
    assert overdue == T0  # already past the bound: due now


def test_a_failed_check_is_retried_on_the_next_sweep() -> None:
    assert retry_due(POLICY, T0) == T0 + timedelta(seconds=900)


def test_the_rate_limit_is_shared_by_live_workers() -> None:
    assert rate_share(10, 1) == 10
    assert rate_share(10, 4) == 2.5
    assert rate_share(10, 0) == 10  # before the first heartbeat counts itself


@settings(max_examples=300, deadline=None)
@given(
    news=st.lists(st.booleans(), min_size=1, max_size=200),
    gap=st.sampled_from([60.0, 300.0, 900.0]),
    staleness_gaps=st.integers(min_value=2, max_value=40),
    spreads=st.lists(st.floats(min_value=-1, max_value=1), min_size=200, max_size=200),
)
def test_simulated_checks_never_exceed_the_staleness_bound(
    news: list[bool], gap: float, staleness_gaps: int, spreads: list[float]
) -> None:
    """Sweeps every ``gap`` seconds reach a customer at the first sweep at or after its due
    time; whatever the history of news, no successful check is further than the bound from
    the previous one."""
    policy = PollPolicy(gap, gap * staleness_gaps, gap * staleness_gaps * 1.5)
    now, interval = T0, None
    for found_new, spread in zip(news, spreads, strict=False):
        interval = next_interval(policy, interval, found_new)
        due = next_due(policy, now, interval, last_success=now, spread=spread)
        # The sweep that reaches it: the first one at or after the due time.
        sweeps_until = -(-(due - T0).total_seconds() // gap)
        checked = T0 + timedelta(seconds=sweeps_until * gap)
        assert (checked - now).total_seconds() <= policy.max_staleness
        now = checked


def test_an_active_customer_is_polled_more_often_than_a_dormant_one() -> None:
    def checks(found_new: bool) -> int:
        now, interval, count = T0, None, 0
        while now < T0 + timedelta(days=2):
            interval = next_interval(POLICY, interval, found_new)
            now = next_due(POLICY, now, interval, last_success=now)
            count += 1
        return count

    active, dormant = checks(True), checks(False)
    assert active == 2 * 24 * 4  # every sweep gap (15 min)
    assert dormant <= 2 * 24 / 4 + 3  # settles at the 4 h cap
