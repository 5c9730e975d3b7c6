"""Who may read the console. Off only on loopback with no credentials set; otherwise every
page needs SYNC_CONSOLE_TOKEN (a bearer header, or the login form's cookie) or the user and
password (HTTP basic auth). Secrets are compared in constant time (``hmac.compare_digest``).

The login cookie carries an HMAC of the token, not the token, so a copied cookie opens the
console but cannot be turned back into the token; changing the token ends every session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import Enum

from sync.config.settings import Settings
from sync.domain.errors import ConfigError

SESSION_COOKIE = "tanma_console"
_SESSION_PURPOSE = b"tanma-sync console session"


@dataclass(frozen=True, slots=True)
class ConsoleCredentials:
    token: str = ""
    user: str = ""
    password: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleCredentials:
        user = settings.sync_console_user
        password = settings.sync_console_password.get_secret_value()
        if bool(user) != bool(password):
            missing = "SYNC_CONSOLE_PASSWORD" if user else "SYNC_CONSOLE_USER"
            raise ConfigError(
                f"setting {missing} is not set: the console's basic auth needs "
                "SYNC_CONSOLE_USER and SYNC_CONSOLE_PASSWORD together"
            )
        return cls(settings.sync_console_token.get_secret_value(), user, password)

    @property
    def required(self) -> bool:
        return bool(self.token or self.user)

    @property
    def basic(self) -> bool:
        return bool(self.user)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_binding(host: str, credentials: ConsoleCredentials, setting: str) -> None:
    """A console bound off loopback without credentials would open the mirror to anyone who
    can reach the port: refuse, naming the setting."""
    if credentials.required or is_loopback(host):
        return
    raise ConfigError(
        f"setting {setting}: the console would listen on {host}, which is not a loopback "
        "address, without credentials: set SYNC_CONSOLE_TOKEN (or SYNC_CONSOLE_USER and "
        "SYNC_CONSOLE_PASSWORD), or bind it to 127.0.0.1"
    )


class Access(Enum):
    GRANTED = "granted"
    MISSING = "missing"  # nothing offered: ask for credentials
    REFUSED = "refused"  # credentials offered, and wrong


def judge(
    credentials: ConsoleCredentials, authorization: str | None, session: str | None
) -> Access:
    """What a request's ``Authorization`` header and session cookie get it."""
    if not credentials.required:
        return Access.GRANTED
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and credentials.token:
            return Access.GRANTED if _same(value.strip(), credentials.token) else Access.REFUSED
        if scheme == "basic" and credentials.basic:
            return Access.GRANTED if _basic_matches(value, credentials) else Access.REFUSED
        return Access.REFUSED
    if session and credentials.token:
        return (
            Access.GRANTED if _same(session, session_value(credentials.token)) else (Access.REFUSED)
        )
    return Access.MISSING


def token_matches(credentials: ConsoleCredentials, offered: str) -> bool:
    """The login form's check."""
    return bool(credentials.token) and _same(offered.strip(), credentials.token)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), _SESSION_PURPOSE, hashlib.sha256).hexdigest()


def _basic_matches(value: str, credentials: ConsoleCredentials) -> bool:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    # Both compared whatever the first gives, so the time taken says nothing of which failed.
    same_user = _same(user, credentials.user)
    same_password = _same(password, credentials.password)
    return bool(sep) and same_user and same_password


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))
