"""Request signing for the Tanmarket open API.

The server checks ``sign = sha256_hex(appId + timestamp + body + appKey)`` over the exact body text
it receives, so a request is serialised once and those very bytes are both signed and sent.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sign(app_id: str, timestamp: str, body: bytes, app_key: str) -> str:
    """Lowercase hex SHA-256 of ``appId + timestamp + body + appKey`` (UTF-8)."""
    digest = hashlib.sha256()
    digest.update(app_id.encode())
    digest.update(timestamp.encode())
    digest.update(body)
    digest.update(app_key.encode())
    return digest.hexdigest()


def encode_body(payload: dict[str, Any]) -> bytes:
    """Serialise a request body once, compactly; callers sign and send these same bytes."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed_headers(
    app_id: str, app_key: str, body: bytes, now_ms: int, *, send_app_key: bool = False
) -> dict[str, str]:
    """The headers every request carries. ``now_ms`` is the (clock-corrected) epoch time in ms."""
    timestamp = str(now_ms)
    headers = {
        "Content-Type": "application/json",
        "appId": app_id,
        "timestamp": timestamp,
        "sign": sign(app_id, timestamp, body, app_key),
    }
    if send_app_key:
        headers["appKey"] = app_key
    return headers
