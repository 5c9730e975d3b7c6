"""Settings from keyword overrides, the environment and ``.env``; errors name the variable."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from sync.config.settings import (
    Settings,
    load_settings,
    misspelled_settings,
    setting_names,
    unknown_settings,
)
from sync.domain.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray .env and no TANMA_/SYNC_ variables from the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith(("TANMA_", "SYNC_")):
            monkeypatch.delenv(name)
    return tmp_path


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return str(caught.value)


# --- defaults -----------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.tanma_base_url == "https://account.tanmarket.cn/apiServer"
    assert s.tanma_app_id == ""
    assert s.tanma_app_key.get_secret_value() == ""
    assert s.tanma_send_app_key_header is False
    assert s.tanma_request_timeout == 30.0
    assert s.tanma_ca_bundle is None
    assert s.tanma_id_units_per_second == 2_048_000
    assert s.sync_database_url == "sqlite:///tanma_mirror.db"
    assert s.sync_sqlite_busy_timeout == 30.0
    assert s.sync_page_size == 100
    assert s.sync_concurrency == 4
    assert s.sync_rate_limit == 10.0
    assert s.sync_lookback == 600.0
    assert s.sync_max_attempts == 5
    assert s.sync_backoff_base == 0.5
    assert s.sync_backoff_max == 30.0
    assert s.sync_max_response_bytes == 8 * 1024 * 1024
    assert s.sync_stop_on_short_page is True
    assert s.sync_log_format == "auto"
    assert s.sync_log_level == "info"


def test_default_lookback_ids() -> None:
    assert load_settings().lookback_ids == 600 * 2_048_000


# --- overrides and the environment --------------------------------------------------------------


def test_keyword_overrides() -> None:
    s = load_settings(
        tanma_app_id="app",
        tanma_app_key="key",
        sync_page_size=30,
        sync_lookback="15m",
        tanma_request_timeout="2m",
        sync_log_level="DEBUG",
        sync_log_format="JSON",
        tanma_base_url="https://api.tanmarket.cn:20066/api/",
    )
    assert s.tanma_app_id == "app"
    assert s.tanma_app_key.get_secret_value() == "key"
    assert s.sync_page_size == 30
    assert s.sync_lookback == 900.0
    assert s.tanma_request_timeout == 120.0
    assert s.sync_log_level == "debug"
    assert s.sync_log_format == "json"
    assert s.tanma_base_url == "https://api.tanmarket.cn:20066/api"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANMA_APP_ID", "env-app")
    monkeypatch.setenv("TANMA_APP_KEY", "env-key")
    monkeypatch.setenv("TANMA_SEND_APP_KEY_HEADER", "true")
    monkeypatch.setenv("SYNC_PAGE_SIZE", "50")
    monkeypatch.setenv("SYNC_LOOKBACK", "1h30m")
    monkeypatch.setenv("SYNC_BACKOFF_BASE", "500ms")
    monkeypatch.setenv("SYNC_STOP_ON_SHORT_PAGE", "false")
    monkeypatch.setenv("SYNC_RATE_LIMIT", "2.5")
    monkeypatch.setenv("SYNC_SQLITE_BUSY_TIMEOUT", "2m")
    monkeypatch.setenv("TANMA_BASE_URL", "http://localhost:8080/")
    s = load_settings()
    assert s.sync_sqlite_busy_timeout == 120.0
    assert s.tanma_app_id == "env-app"
    assert s.tanma_app_key.get_secret_value() == "env-key"
    assert s.tanma_send_app_key_header is True
    assert s.sync_page_size == 50
    assert s.sync_lookback == 5400.0
    assert s.sync_backoff_base == 0.5
    assert s.sync_stop_on_short_page is False
    assert s.sync_rate_limit == 2.5
    assert s.tanma_base_url == "http://localhost:8080"


def test_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_PAGE_SIZE", "50")
    assert load_settings(sync_page_size=7).sync_page_size == 7


def test_dotenv_in_the_working_directory_is_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text(
        "# comment\nTANMA_APP_ID=from-dotenv\nSYNC_PAGE_SIZE=25\nSYNC_LOOKBACK=15m\n"
        "UNRELATED_SETTING=whatever\n",
        encoding="utf-8",
    )
    s = load_settings()
    assert s.tanma_app_id == "from-dotenv"
    assert s.sync_page_size == 25
    assert s.sync_lookback == 900.0


def test_environment_beats_dotenv(clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_environment / ".env").write_text("SYNC_PAGE_SIZE=25\n", encoding="utf-8")
    monkeypatch.setenv("SYNC_PAGE_SIZE", "60")
    assert load_settings().sync_page_size == 60


def test_dotenv_elsewhere_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SYNC_PAGE_SIZE=25\n", encoding="utf-8")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert load_settings().sync_page_size == 100


def test_bad_value_in_dotenv_names_the_variable(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("SYNC_CONCURRENCY=lots\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("setting SYNC_CONCURRENCY")


@pytest.mark.parametrize("text", ["true", "1", "yes", "on", "TRUE"])
def test_booleans_true(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANMA_SEND_APP_KEY_HEADER", text)
    assert load_settings().tanma_send_app_key_header is True


@pytest.mark.parametrize("text", ["false", "0", "no", "off"])
def test_booleans_false(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_STOP_ON_SHORT_PAGE", text)
    assert load_settings().sync_stop_on_short_page is False


def test_ca_bundle_that_exists(clean_environment: Path) -> None:
    bundle = clean_environment / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    assert load_settings(tanma_ca_bundle=str(bundle)).tanma_ca_bundle == bundle


def test_bounds_that_are_allowed() -> None:
    s = load_settings(
        sync_page_size=10_000,
        sync_concurrency=256,
        sync_max_attempts=100,
        sync_max_response_bytes=1024,
        sync_backoff_base="0",
        sync_lookback="0",
    )
    assert s.sync_page_size == 10_000
    assert s.sync_concurrency == 256
    assert s.sync_max_attempts == 100
    assert s.sync_max_response_bytes == 1024
    assert s.sync_backoff_base == 0.0
    assert s.lookback_ids == 0


# --- malformed values ---------------------------------------------------------------------------

MALFORMED = [
    ("TANMA_BASE_URL", "ftp://account.tanmarket.cn"),
    ("TANMA_BASE_URL", "account.tanmarket.cn/apiServer"),
    ("TANMA_SEND_APP_KEY_HEADER", "maybe"),
    ("TANMA_REQUEST_TIMEOUT", "soon"),
    ("TANMA_REQUEST_TIMEOUT", "0"),
    ("TANMA_REQUEST_TIMEOUT", "-5s"),
    ("TANMA_REQUEST_TIMEOUT", "nan"),
    ("TANMA_CA_BUNDLE", "/nonexistent/dir/ca.pem"),
    ("TANMA_ID_UNITS_PER_SECOND", "0"),
    ("TANMA_ID_UNITS_PER_SECOND", "fast"),
    ("SYNC_PAGE_SIZE", "0"),
    ("SYNC_PAGE_SIZE", "10001"),
    ("SYNC_PAGE_SIZE", "abc"),
    ("SYNC_PAGE_SIZE", "1.5"),
    ("SYNC_CONCURRENCY", "0"),
    ("SYNC_CONCURRENCY", "257"),
    ("SYNC_RATE_LIMIT", "0"),
    ("SYNC_RATE_LIMIT", "-1"),
    ("SYNC_RATE_LIMIT", "nan"),
    ("SYNC_RATE_LIMIT", "quick"),
    ("SYNC_LOOKBACK", "10 minutes"),
    ("SYNC_LOOKBACK", "-5m"),
    ("SYNC_LOOKBACK", "inf"),
    ("SYNC_SQLITE_BUSY_TIMEOUT", "soon"),
    ("SYNC_SQLITE_BUSY_TIMEOUT", "-1s"),
    ("SYNC_MAX_ATTEMPTS", "0"),
    ("SYNC_MAX_ATTEMPTS", "101"),
    ("SYNC_BACKOFF_BASE", "x"),
    ("SYNC_BACKOFF_MAX", "1e400"),
    ("SYNC_MAX_RESPONSE_BYTES", "1023"),
    ("SYNC_MAX_RESPONSE_BYTES", "8MB"),
    ("SYNC_STOP_ON_SHORT_PAGE", "perhaps"),
    ("SYNC_LOG_FORMAT", "xml"),
    ("SYNC_LOG_LEVEL", "trace"),
]


@pytest.mark.parametrize(("name", "value"), MALFORMED)
def test_malformed_environment_value_names_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    text = config_error()
    assert text.startswith(f"setting {name}")
    assert "\n" not in text
    assert value in text  # not a secret: the value is shown to help


@pytest.mark.parametrize(("name", "value"), MALFORMED)
def test_malformed_override_names_the_variable(name: str, value: str) -> None:
    text = config_error(**{name.lower(): value})
    assert text.startswith(f"setting {name}")


@pytest.mark.parametrize(
    ("name", "value"),
    [("SYNC_PAGE_SIZE", -3), ("SYNC_DATABASE_URL", 5), ("TANMA_APP_ID", ["x"])],
)
def test_malformed_typed_override(name: str, value: object) -> None:
    assert config_error(**{name.lower(): value}).startswith(f"setting {name}")


def test_a_busy_timeout_above_a_day_is_refused() -> None:
    # SQLite keeps the timeout in milliseconds in a C int; a day is far more than anyone needs.
    text = config_error(sync_sqlite_busy_timeout="2d")
    assert text.startswith("setting SYNC_SQLITE_BUSY_TIMEOUT")


def test_several_errors_are_counted() -> None:
    text = config_error(sync_page_size=0, sync_concurrency=0, sync_max_attempts=0)
    assert text.startswith("setting ")
    assert "2 more" in text


@pytest.mark.parametrize("value", [12345, ["sekrit-value-1"], {"k": "sekrit-value-2"}, 4.5])
def test_bad_app_key_is_never_echoed(value: object) -> None:
    text = config_error(tanma_app_key=value)
    assert text.startswith("setting TANMA_APP_KEY")
    assert "sekrit" not in text
    assert repr(value) not in text
    assert str(value) not in text


def test_app_key_is_not_echoed_by_errors_about_other_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TANMA_APP_KEY", "sekrit-in-env")
    text = config_error(sync_page_size=0)
    assert "sekrit" not in text


def test_app_key_is_hidden_in_repr() -> None:
    s = load_settings(tanma_app_key="sekrit-repr")
    assert "sekrit-repr" not in repr(s)
    assert "sekrit-repr" not in str(s.model_dump())


# --- credentials --------------------------------------------------------------------------------


def test_require_credentials_names_both_missing() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings().require_credentials()
    text = str(caught.value)
    assert "TANMA_APP_ID" in text
    assert "TANMA_APP_KEY" in text
    assert text.startswith("settings ") and text.endswith("are not set (see .env.example)")


def test_require_credentials_names_the_missing_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tanma_app_id="app").require_credentials()
    assert "TANMA_APP_KEY" in str(caught.value)
    assert "TANMA_APP_ID" not in str(caught.value)


def test_require_credentials_names_the_missing_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANMA_APP_KEY", "sekrit-k")
    with pytest.raises(ConfigError) as caught:
        load_settings().require_credentials()
    assert "TANMA_APP_ID" in str(caught.value)
    assert "TANMA_APP_KEY" not in str(caught.value)
    assert "sekrit" not in str(caught.value)


def test_require_credentials_passes_with_both() -> None:
    load_settings(tanma_app_id="app", tanma_app_key="key").require_credentials()


# --- lookback_ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lookback", "units", "expected"),
    [
        ("10m", 1000, 600_000),
        ("90", 2, 180),
        ("1h", 2_048_000, 3600 * 2_048_000),
        ("500ms", 2_048_000, 1_024_000),
        ("0", 5, 0),
    ],
)
def test_lookback_ids_is_seconds_times_units(lookback: str, units: int, expected: int) -> None:
    s = load_settings(sync_lookback=lookback, tanma_id_units_per_second=units)
    assert s.lookback_ids == expected
    assert type(s.lookback_ids) is int


# --- bugs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["env", "dotenv"])
def test_empty_ca_bundle_means_none(
    where: str, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "env":
        monkeypatch.setenv("TANMA_CA_BUNDLE", "")
    else:
        (clean_environment / ".env").write_text("TANMA_CA_BUNDLE=\n", encoding="utf-8")
    assert load_settings().tanma_ca_bundle is None


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_infinite_rate_limit_is_a_config_error(value: str) -> None:
    assert config_error(sync_rate_limit=value).startswith("setting SYNC_RATE_LIMIT")


def test_env_example_lists_every_setting_and_loads_as_is(monkeypatch, tmp_path) -> None:
    """.env.example is the settings' documentation: it names each one, and a copy of it loads."""
    example = Path(__file__).resolve().parents[2] / ".env.example"
    listed = set(re.findall(r"^([A-Z0-9_]+)=", example.read_text(encoding="utf-8"), re.MULTILINE))
    assert listed == {name.upper() for name in Settings.model_fields}
    shutil.copy(example, tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    for name in listed:
        monkeypatch.delenv(name, raising=False)
    assert load_settings().sync_page_size == 100


# --- names that are not settings --------------------------------------------------------------


def test_unknown_names_get_the_closest_setting() -> None:
    warnings = unknown_settings(
        {
            "the environment": ["SYNC_CONCURENCY", "sync_page_size", "HOME", "TANMA_APP_ID"],
            ".env": ["SYNC_RATE_LIMT", "TANMA_SOMETHING_ELSE", "TANMA_REQUIRE_POSTGRES"],
        }
    )
    assert warnings == [
        "warning: SYNC_CONCURENCY in the environment is not a tanma-sync setting; "
        "did you mean SYNC_CONCURRENCY?",
        "warning: SYNC_RATE_LIMT in .env is not a tanma-sync setting; did you mean "
        "SYNC_RATE_LIMIT?",
        "warning: TANMA_SOMETHING_ELSE in .env is not a tanma-sync setting (see .env.example)",
    ]


def test_misspelled_settings_reads_dotenv(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("SYNC_PAGESIZE=5\nSYNC_PAGE_SIZE=6\n", "utf-8")
    assert misspelled_settings({"SYNC_LOOKBAK": "1m"}) == [
        "warning: SYNC_LOOKBAK in the environment is not a tanma-sync setting; did you mean "
        "SYNC_LOOKBACK?",
        "warning: SYNC_PAGESIZE in .env is not a tanma-sync setting; did you mean SYNC_PAGE_SIZE?",
    ]


def test_every_setting_is_a_known_name() -> None:
    assert "SYNC_DATABASE_URL" in setting_names() and "TANMA_APP_KEY" in setting_names()
    assert unknown_settings({"the environment": sorted(setting_names())}) == []


def test_a_dotenv_that_is_not_utf8_is_a_config_error(clean_environment: Path) -> None:
    (clean_environment / ".env").write_bytes(b"TANMA_APP_ID=\xd5\xc5\n")
    with pytest.raises(ConfigError, match=r"\.env: not UTF-8 text \(byte 13\)"):
        load_settings()
