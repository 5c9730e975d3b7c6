"""JSON in and out of the hot path: orjson where it gives exactly what the standard library
would, the standard library for the rest."""

from __future__ import annotations

import json
from typing import Any

import orjson

# Once orjson has accepted a text (it refuses raw control characters, lone surrogates and
# numbers that overflow a double), a NUL can reach a decoded string only through this escape.
# The search may match where no NUL results (an escaped backslash before "u0000"): that only
# sends the document down the slow, thorough path.
_NUL_ESCAPE = b"\\u0000"
# orjson turns an integer beyond 64 bits into a float, silently, and long mantissas are where
# decoders may round differently: any run of 19 digits (the shortest integer that can leave
# the int64 range) goes to json, which keeps integers exact. Matches inside strings only cost
# speed. Found by mapping every digit to "0" and searching for 19 of them: a regex costs
# about 9 us per record here, this about 0.7.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19


def decode_json(body: bytes | str) -> tuple[object, bool]:
    """The decoded document, and whether it is proven storable: no string holds a NUL or a
    lone surrogate, no number is non-finite, no integer is wider than 64 bits.

    orjson decodes most answers, fast; what it refuses or might read differently (long numbers,
    NaN, lone surrogates, UTF-16, a BOM) goes to the standard library, which decodes it
    exactly, and whose errors are the ones callers see. The two agree on every text sent to both.
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw), _NUL_ESCAPE not in raw
        except orjson.JSONDecodeError:
            pass
    return json.loads(body), False


def encode_json(value: dict[str, Any]) -> str:
    """Compact UTF-8 JSON text of a decoded record (orjson), or the standard library's, same
    form, for what orjson will not write (integers wider than 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
