"""Discovery's settings: the China-time start of a full walk, and the daemon's schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.config.settings import load_settings
from sync.daemon.daemon import discovery_cadences
from sync.domain.errors import ConfigError


def test_the_since_setting_is_china_time_and_a_date_alone_means_midnight() -> None:
    settings = load_settings(_env_file=None, sync_discovery_since="2020-05-01")
    assert settings.discovery_since == datetime(2020, 4, 30, 16, 0, tzinfo=UTC)


def test_a_since_that_is_not_a_time_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="SYNC_DISCOVERY_SINCE"):
        load_settings(_env_file=None, sync_discovery_since="last tuesday")


def test_the_schedules_parse_and_off_turns_one_off() -> None:
    settings = load_settings(
        _env_file=None, sync_discovery_schedule="10m", sync_discovery_full_schedule="off"
    )
    incremental, full = discovery_cadences(settings)
    assert incremental is not None and incremental.longest_gap_s == 600
    assert full is None
    default_incremental, default_full = discovery_cadences(load_settings(_env_file=None))
    assert default_incremental is not None and default_full is not None
    assert default_full.longest_gap_s == 86_400


def test_a_bad_schedule_names_its_setting() -> None:
    settings = load_settings(_env_file=None, sync_discovery_full_schedule="every day")
    with pytest.raises(ConfigError, match="SYNC_DISCOVERY_FULL_SCHEDULE"):
        discovery_cadences(settings)
