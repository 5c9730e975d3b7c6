"""Settings, from the environment and from ``.env`` in the working directory.

Every setting is named exactly as its environment variable; ``.env.example`` lists them all.
A missing or malformed setting becomes one line that names it (``ConfigError``), never a trace.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.domain.chinatime import parse_china_time
from sync.domain.durations import parse_duration
from sync.domain.errors import ConfigError
from sync.domain.push import CUSTOMER_TYPES_GONE

Duration = Annotated[float, BeforeValidator(parse_duration)]

# Settings whose values must never be echoed back, not even in an error about them.
SECRET_SETTINGS = frozenset(
    {
        "tanma_app_key",
        "sync_archive_s3_secret_access_key",
        "sync_console_token",
        "sync_console_password",
    }
)
ENV_FILE = ".env"
SETTING_PREFIXES = ("TANMA_", "SYNC_")
# Variables with a settings prefix that are not settings: the test suite's and the benchmark's
# own switches (README "Development"). Warning about them would only be noise in CI.
HARNESS_VARIABLES = frozenset(
    {
        "TANMA_TEST_PG_URL",
        "TANMA_REQUIRE_POSTGRES",
        "TANMA_BENCH_PG_URL",
        "TANMA_SOAK",
        "TANMA_RELIABILITY_SEED",
        "TANMA_TEST_S3_ENDPOINT",
        "TANMA_REQUIRE_S3",
    }
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    tanma_base_url: str = "https://account.tanmarket.cn/apiServer"
    tanma_app_id: str = ""
    tanma_app_key: SecretStr = SecretStr("")
    tanma_send_app_key_header: bool = False
    tanma_request_timeout: Duration = Field(default=30.0, gt=0)
    tanma_ca_bundle: Path | None = None
    # Record ids are (ms since 2015-01-01 +08:00) × 2048 + a sequence number: the vendor's own
    # sample records fit that exactly. Used only to turn SYNC_LOOKBACK into an id distance.
    tanma_id_units_per_second: int = Field(default=2_048_000, gt=0)

    sync_database_url: str = "sqlite:///tanma_mirror.db"
    sync_sqlite_busy_timeout: Duration = Field(default=30.0, le=86_400)
    sync_page_size: int = Field(default=100, ge=1, le=10_000)
    sync_concurrency: int = Field(default=4, ge=1, le=256)
    sync_rate_limit: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    sync_rate_burst: int = Field(default=3, ge=1, le=20)
    sync_lookback: Duration = 600.0
    sync_max_attempts: int = Field(default=5, ge=1, le=100)
    sync_backoff_base: Duration = 0.5
    sync_backoff_max: Duration = 30.0
    # The circuit breaker (sync/domain/breaker.py): a pass stops once requests for this many
    # customers in a row, or every request for this long, failed the same way.
    sync_breaker_customers: int = Field(default=8, ge=1, le=100_000)
    sync_breaker_seconds: Duration = Field(default=30.0, gt=0)
    sync_max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    sync_stop_on_short_page: bool = True
    # The mass-delete guard (sync/domain/deletion_guard.py): a full reconcile that would mark
    # more than this share of a customer's live files deleted holds them back instead.
    sync_max_delete_share: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)
    sync_max_delete_min_files: int = Field(default=5, ge=1)
    sync_log_format: Literal["auto", "console", "json", "logfmt"] = "auto"
    sync_log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Customer discovery (`customers discover`, sync/domain/discovery.py).
    tanma_search_max_results: int = Field(default=10_000, ge=1)
    sync_discovery_page_size: int = Field(default=100, ge=1, le=10_000)
    sync_discovery_lookback: Duration = Field(default=3600.0, ge=0)
    sync_discovery_max_rewalks: int = Field(default=5, ge=0, le=1000)
    sync_discovery_since: str = "2015-01-01 00:00:00"
    sync_discovery_follow_hint: bool = True
    sync_discovery_schedule: str = "15m"
    sync_discovery_full_schedule: str = "0 4 * * *"

    # The daemon (sync/daemon/schedule.py parses the schedules, once, when a daemon starts).
    sync_schedule: str = "15m"
    sync_full_schedule: str = "0 3 * * 0"
    sync_schedule_timezone: str = "Asia/Shanghai"
    sync_poll_max_interval: Duration = Field(default=4 * 3600.0, gt=0)
    sync_max_staleness: Duration = Field(default=6 * 3600.0, gt=0)
    sync_lease_ttl: Duration = Field(default=120.0, ge=1)
    sync_shutdown_timeout: Duration = Field(default=30.0, gt=0)
    sync_http_listen: str = "127.0.0.1:9477"
    sync_worker_id: str = Field(default="", max_length=128)
    # After a sweep the breaker stopped, the next one is tried after 1 min, then 2, 4, … up to
    # this (sync/daemon/schedule.py outage_backoff).
    sync_outage_backoff_max: Duration = Field(default=900.0, gt=0)

    # The push receiver (sync/daemon/push_receiver.py): off while SYNC_PUSH_LISTEN is off.
    sync_push_listen: str = "off"
    sync_push_path: str = "/tanmarket/push"
    sync_push_timestamp_window: Duration = Field(default=300.0, gt=0)
    sync_push_max_body_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)
    sync_push_reply_format: Literal["digits", "json"] = "digits"
    sync_push_coalesce: Duration = Field(default=2.0, ge=0)
    sync_push_batch: int = Field(default=500, ge=1, le=10_000)
    # Push types that say a customer was deleted (the vendor's doc does not spell it).
    sync_push_gone_types: str = ",".join(sorted(CUSTOMER_TYPES_GONE))
    # Processed inbox rows older than this are deleted (the pending ones are kept until done).
    sync_push_retention: Duration = Field(default=30 * 86_400.0, ge=3600)
    # A pause between a push's commit and its processing; a test or a drill uses it to kill
    # the daemon after the answer and before the effect. 0 in production.
    sync_push_process_delay: Duration = Field(default=0.0, ge=0)
    # The corp id the push cipher's counter block is made from; empty: the app id's part
    # before its first "_" (the vendor doc's rule).
    tanma_corp_id: str = Field(default="", max_length=128)

    # The file archive: off while SYNC_ARCHIVE_URL is empty. sync/archive/ reads the URL and
    # the host patterns, once, when a command that archives starts.
    sync_archive_url: str = ""
    sync_archive_hosts: str = "*.tanmarket.cn"
    sync_archive_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    sync_archive_concurrency: int = Field(default=4, ge=1, le=256)
    sync_archive_rate_limit: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    sync_archive_max_attempts: int = Field(default=3, ge=1, le=100)
    sync_archive_backoff_base: Duration = 1.0
    sync_archive_backoff_max: Duration = 30.0
    sync_archive_timeout: Duration = Field(default=60.0, gt=0)
    sync_archive_max_redirects: int = Field(default=5, ge=0, le=20)
    sync_archive_retry_base: Duration = Field(default=600.0, ge=0)
    sync_archive_retry_max: Duration = Field(default=86_400.0, ge=0)
    sync_archive_claim_ttl: Duration = Field(default=300.0, ge=1)
    sync_archive_idle: Duration = Field(default=60.0, gt=0)
    sync_archive_s3_endpoint: str = ""
    sync_archive_s3_region: str = ""
    sync_archive_s3_access_key_id: str = ""
    sync_archive_s3_secret_access_key: SecretStr = SecretStr("")

    # The operator console (sync/console/): on the daemon's SYNC_HTTP_LISTEN under /console/,
    # or served alone by `tanma-sync console` on SYNC_CONSOLE_HOST:SYNC_CONSOLE_PORT. Off
    # loopback it needs the token or the user and password (sync/console/auth.py).
    sync_console: bool = True
    sync_console_host: str = "127.0.0.1"
    sync_console_port: int = Field(default=9478, ge=0, le=65535)
    sync_console_token: SecretStr = SecretStr("")
    sync_console_user: str = ""
    sync_console_password: SecretStr = SecretStr("")

    @field_validator("sync_archive_s3_endpoint")
    @classmethod
    def _s3_endpoint(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("tanma_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("sync_log_format", "sync_log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("tanma_ca_bundle", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tanma_ca_bundle")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("sync_schedule_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (write e.g. Asia/Shanghai or UTC)"
            ) from None
        return value

    @field_validator("sync_discovery_since")
    @classmethod
    def _china_time(cls, value: str) -> str:
        text = value.strip()
        if len(text) == len("2015-01-01"):
            text += " 00:00:00"
        if parse_china_time(text) is None:
            raise ValueError("write a China time as YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")
        return text

    @property
    def discovery_since(self) -> datetime:
        """SYNC_DISCOVERY_SINCE as an instant: where a full discovery's windows begin."""
        instant = parse_china_time(self.sync_discovery_since)
        assert instant is not None, "checked by the validator"
        return instant

    @field_validator("sync_http_listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value.strip()

    @field_validator("sync_push_listen")
    @classmethod
    def _push_listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value.strip()

    @field_validator("sync_push_path")
    @classmethod
    def _push_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or any(c in value for c in "?#{} ") or len(value) > 256:
            raise ValueError("must be a URL path starting with / (e.g. /tanmarket/push)")
        return value

    @field_validator("sync_push_gone_types")
    @classmethod
    def _push_gone_types(cls, value: str) -> str:
        for kind in _comma_list(value):
            if not all(c.isalnum() or c == "_" for c in kind) or len(kind) > 64:
                raise ValueError(f"{kind!r} is not a push type (letters, digits and _)")
        return value

    @cached_property
    def push_gone_types(self) -> frozenset[str]:
        return frozenset(_comma_list(self.sync_push_gone_types))

    @cached_property
    def push_listen_address(self) -> tuple[str, int] | None:
        return parse_listen_address(self.sync_push_listen)

    @cached_property
    def http_listen_address(self) -> tuple[str, int] | None:
        return parse_listen_address(self.sync_http_listen)

    @property
    def archive_enabled(self) -> bool:
        return not is_off(self.sync_archive_url)

    @property
    def lookback_ids(self) -> int:
        """SYNC_LOOKBACK as a distance in record-id units."""
        return int(self.sync_lookback * self.tanma_id_units_per_second)

    def require_credentials(self) -> None:
        """Commands that call the API need both halves of the credentials."""
        missing = [
            name
            for name, value in (
                ("TANMA_APP_ID", self.tanma_app_id),
                ("TANMA_APP_KEY", self.tanma_app_key.get_secret_value()),
            )
            if not value
        ]
        if len(missing) == 1:
            raise ConfigError(f"setting {missing[0]} is not set (see .env.example)")
        if missing:
            raise ConfigError(f"settings {' and '.join(missing)} are not set (see .env.example)")


_OFF = frozenset({"", "off", "none", "never"})


def is_off(text: str) -> bool:
    """Whether a setting that can be switched off says so (``off``, ``none``, ``never``, empty)."""
    return text.strip().lower() in _OFF


def parse_listen_address(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[::1]:9477`` for IPv6), or None for ``off``."""
    text = text.strip()
    if is_off(text):
        return None
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:9477, or off)")
    return host, int(port)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``.env``; ``overrides`` win. Raises ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{ENV_FILE}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def setting_names() -> frozenset[str]:
    """Every setting as its environment variable is spelled."""
    return frozenset(name.upper() for name in Settings.model_fields)


def unknown_settings(sources: Mapping[str, Iterable[str]]) -> list[str]:
    """One warning line per TANMA_/SYNC_ variable that is not a setting, with the closest
    real name when one is close. ``sources`` maps where the names were found (``the
    environment``, ``.env``) to the names."""
    known = setting_names()
    warnings: list[str] = []
    for where, names in sources.items():
        for name in sorted(set(names)):
            upper = name.upper()
            if not upper.startswith(SETTING_PREFIXES) or upper in known:
                continue
            if upper in HARNESS_VARIABLES:
                continue
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else " (see .env.example)"
            warnings.append(f"warning: {name} in {where} is not a tanma-sync setting{hint}")
    return warnings


def misspelled_settings(environ: Mapping[str, str], env_file: Path = Path(ENV_FILE)) -> list[str]:
    """``unknown_settings`` over the environment and the ``.env`` the settings read."""
    sources: dict[str, Iterable[str]] = {"the environment": environ.keys()}
    if env_file.is_file():
        # Called after load_settings, which has already read this file as UTF-8.
        sources[str(env_file)] = dotenv_values(env_file, encoding="utf-8").keys()
    return unknown_settings(sources)


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    more = f"; and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    if not first["loc"]:
        # A check across settings: its message names them, and its input is every setting,
        # secrets included, so it is never echoed.
        message = first["msg"].removeprefix("Value error, ")
        return (message if message.startswith("setting") else f"settings: {message}") + more
    field = str(first["loc"][0]) if first["loc"] else "?"
    message = first["msg"].removeprefix("Value error, ")
    shown = "" if field in SECRET_SETTINGS else f" (got {first.get('input')!r})"
    return f"setting {field.upper()}: {message}{shown}{more}"


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
