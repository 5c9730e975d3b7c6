"""Where objects live in the store (pure): content under its SHA-256, temporaries beside it.

``sha256/<first 2 hex>/<64 hex>`` holds a file's bytes; ``tmp/<token>`` holds a download in
progress. Nothing but a finished, hashed download is ever moved to a content key, so a reader
can trust any object under ``sha256/`` to hash to its name.
"""

from __future__ import annotations

import re
import uuid

CONTENT_ROOT = "sha256"
TEMP_ROOT = "tmp"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256_hex(text: str) -> bool:
    return bool(_HEX64.match(text))


def content_key(sha256_hex: str) -> str:
    if not is_sha256_hex(sha256_hex):
        raise ValueError(f"not a lowercase SHA-256 hex digest: {sha256_hex!r}")
    return f"{CONTENT_ROOT}/{sha256_hex[:2]}/{sha256_hex}"


def temp_key() -> str:
    """A fresh, unguessable name for one download in progress."""
    return f"{TEMP_ROOT}/{uuid.uuid4().hex}"
