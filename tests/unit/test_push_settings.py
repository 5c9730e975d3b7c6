"""The push receiver's settings: off by default, and a bad value is one line naming it."""

from __future__ import annotations

import pytest

from sync.config.settings import load_settings
from sync.domain.errors import ConfigError
from sync.domain.push import CUSTOMER_TYPES_GONE


def test_off_by_default() -> None:
    settings = load_settings(_env_file=None)
    assert settings.push_listen_address is None
    assert settings.sync_push_path == "/tanmarket/push"
    assert settings.sync_push_timestamp_window == 300


def test_listen_address_and_path() -> None:
    settings = load_settings(_env_file=None, sync_push_listen="0.0.0.0:9480", sync_push_path="/p")
    assert settings.push_listen_address == ("0.0.0.0", 9480)


def test_gone_types_and_retention() -> None:
    default = load_settings(_env_file=None)
    assert default.push_gone_types == CUSTOMER_TYPES_GONE
    assert default.sync_push_retention == 30 * 86_400
    chosen = load_settings(_env_file=None, sync_push_gone_types=" qw_del , other_gone,")
    assert chosen.push_gone_types == {"qw_del", "other_gone"}
    assert load_settings(_env_file=None, sync_push_gone_types="").push_gone_types == frozenset()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"sync_push_listen": "nowhere"}, "SYNC_PUSH_LISTEN"),
        ({"sync_push_path": "no-slash"}, "SYNC_PUSH_PATH"),
        ({"sync_push_reply_format": "xml"}, "SYNC_PUSH_REPLY_FORMAT"),
        ({"sync_push_timestamp_window": "0s"}, "SYNC_PUSH_TIMESTAMP_WINDOW"),
        ({"sync_push_gone_types": "customer-deleted"}, "SYNC_PUSH_GONE_TYPES"),
        ({"sync_push_retention": "10m"}, "SYNC_PUSH_RETENTION"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **overrides)
    assert str(caught.value).startswith(f"setting {named}:")
