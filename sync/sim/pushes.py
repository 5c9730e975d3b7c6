"""The simulator's message pushes: signed and encrypted as Tanmarket sends them, to the address
registered with ``POST /api/v2/push-register``, with switches for bad signs, replays (an old
push sent again, stale timestamp and all) and duplicates (the same ``msgId`` again, freshly
signed)."""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass

import aiohttp

from sync.domain.push import PUSH_VERSION, corp_id_of, encrypt_body, push_sign


@dataclass(frozen=True, slots=True)
class SentPush:
    """One push as sent, and how the receiver answered it."""

    msg_id: str
    type: str
    noise: int
    status: int
    answer: str


@dataclass(frozen=True, slots=True)
class _Wire:
    headers: dict[str, str]
    body: str


class PushSender:
    def __init__(self, app_id: str, app_key: str, corp_id: str = "", seed: int = 0) -> None:
        self.app_id = app_id
        self._app_key = app_key
        self._corp_id = corp_id_of(app_id, corp_id)
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self.address: str | None = None
        self.subscription: frozenset[str] = frozenset()
        self.sent: list[SentPush] = []
        self._last: _Wire | None = None
        self._session: aiohttp.ClientSession | None = None

    def register(self, address: str, subscription: str) -> None:
        self.address = address
        self.subscription = frozenset(t.strip() for t in subscription.split(",") if t.strip())

    def wants(self, kind: str) -> bool:
        return self.address is not None and (not self.subscription or kind in self.subscription)

    def build(
        self,
        kind: str,
        content: object,
        *,
        msg_id: str | None = None,
        bad_sign: bool = False,
        timestamp_ms: int | None = None,
    ) -> tuple[str, int, _Wire]:
        msg_id = msg_id or f"sim-{next(self._ids)}"
        noise = self._rng.randint(-(2**63), 2**63 - 1)
        text = json.dumps(
            {"type": kind, "noise": noise, "msgId": msg_id, "content": content},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        sign = push_sign(self.app_id, PUSH_VERSION, timestamp, self._app_key)
        if bad_sign:
            sign = sign[::-1]
        headers = {
            "Content-Type": "text/plain;charset=UTF-8",
            "appId": self.app_id,
            "timestamp": timestamp,
            "version": PUSH_VERSION,
            "sign": sign,
        }
        return msg_id, noise, _Wire(headers, encrypt_body(text, self._app_key, self._corp_id))

    async def send(
        self,
        kind: str,
        content: object,
        *,
        msg_id: str | None = None,
        bad_sign: bool = False,
        duplicate: bool = False,
    ) -> SentPush:
        """Send one push to the registered address (``duplicate``: send it twice)."""
        msg_id, noise, wire = self.build(kind, content, msg_id=msg_id, bad_sign=bad_sign)
        sent = await self._post(kind, msg_id, noise, wire)
        if duplicate:
            sent = await self._post(kind, msg_id, noise, wire)
        self._last = wire
        return sent

    async def replay(self) -> int:
        """The last push sent again, byte for byte; the receiver's status."""
        if self._last is None:
            raise ValueError("nothing was sent yet")
        status, _ = await self._deliver(self._last)
        return status

    async def _post(self, kind: str, msg_id: str, noise: int, wire: _Wire) -> SentPush:
        status, answer = await self._deliver(wire)
        sent = SentPush(msg_id, kind, noise, status, answer)
        self.sent.append(sent)
        return sent

    async def _deliver(self, wire: _Wire) -> tuple[int, str]:
        if self.address is None:
            raise ValueError("no push address registered")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.post(
                self.address, data=wire.body.encode(), headers=wire.headers
            ) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, f"not delivered: {exc}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
