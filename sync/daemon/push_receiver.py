"""The push receiver: Tanmarket's ``POST`` to ``SYNC_PUSH_PATH`` on ``SYNC_PUSH_LISTEN``, a
listener of its own (it faces the internet; the status listener with ``/metrics`` must not).

The accept path is kept lean: check the headers (sign in constant time, app id, timestamp
window), read the body within ``SYNC_PUSH_MAX_BODY_BYTES``, decrypt, parse, commit to the inbox
and answer the ``noise``. Commits are grouped: concurrent pushes share one transaction
(sync/mirror/batching.py), and each is answered only once its own row is committed. What a push
asks for is done after the answer, from the inbox (push_processing.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog
from aiohttp import web

from sync.config.settings import Settings
from sync.daemon.metrics import DaemonMetrics, push_type_label
from sync.domain.push import (
    PushHeaders,
    PushMessage,
    PushRejected,
    Rejection,
    corp_id_of,
    decrypt_body,
    echo_noise,
    parse_message,
    verify_headers,
)
from sync.mirror.batching import Batcher
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.push_inbox import PushInboxStore

log = structlog.get_logger("tanma_sync.push")

_HEADERS = ("appId", "timestamp", "version", "sign")
# Pushes per group commit: one statement's parameters stay small on both databases.
_BATCH_MAX = 200


class PushReceiver:
    def __init__(
        self,
        settings: Settings,
        inbox: PushInboxStore,
        metrics: DaemonMetrics,
        *,
        worker_id: str,
        on_committed: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._app_id = settings.tanma_app_id
        self._app_key = settings.tanma_app_key.get_secret_value()
        self._corp_id = corp_id_of(settings.tanma_app_id, settings.tanma_corp_id)
        self._metrics = metrics
        self._on_committed = on_committed
        self._worker_id = worker_id
        self._inbox = inbox
        self._batcher: Batcher[PushMessage, bool] = Batcher(
            self._commit, lambda batch, _item: len(batch) < _BATCH_MAX
        )
        # Refused pushes by reason since the last flush to the database: (count, last detail).
        # The processing on the daemon's thread takes them (push_thread.py).
        self._rejections: dict[str, tuple[int, str]] = {}
        self._rejections_lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application(client_max_size=self._settings.sync_push_max_body_bytes)
        app.router.add_post(self._settings.sync_push_path, self._receive)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1] if self._runner.addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def take_rejections(self) -> dict[str, tuple[int, str]]:
        with self._rejections_lock:
            taken, self._rejections = self._rejections, {}
        return taken

    async def _commit(self, messages: Sequence[PushMessage]) -> Sequence[bool]:
        return await self._inbox.insert(messages, self._worker_id)

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            message = await self._verified(request)
        except PushRejected as exc:
            return self._refuse(request, exc)
        try:
            fresh = await self._batcher.submit(message)
        except DATABASE_ERRORS as exc:
            # Not committed, so not answered as received: Tanmarket sends it again.
            log.warning("push_not_stored", msg_id=message.msg_id, error=describe_db_error(exc))
            return web.Response(status=503, text="inbox unavailable\n")
        kind = push_type_label(message.type)
        if fresh:
            self._on_committed()
        else:
            self._metrics.pushes.labels(kind, "duplicate").inc()
        return web.Response(
            text=echo_noise(message.noise, self._settings.sync_push_reply_format),
            content_type="text/plain",
        )

    async def _verified(self, request: web.Request) -> PushMessage:
        values = [request.headers.get(name) for name in _HEADERS]
        missing = [name for name, value in zip(_HEADERS, values, strict=True) if not value]
        if missing:
            raise PushRejected(Rejection.MISSING_HEADER, f"missing header {', '.join(missing)}")
        app_id, timestamp, version, sign = (v or "" for v in values)
        verify_headers(
            PushHeaders(app_id, timestamp, version, sign),
            app_id=self._app_id,
            app_key=self._app_key,
            now_ms=int(time.time() * 1000),
            window_s=self._settings.sync_push_timestamp_window,
        )
        limit = self._settings.sync_push_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PushRejected(Rejection.TOO_LARGE, f"body over {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PushRejected(Rejection.TOO_LARGE, f"body over {limit} bytes") from None
        return parse_message(decrypt_body(body, self._app_key, self._corp_id))

    def _refuse(self, request: web.Request, exc: PushRejected) -> web.Response:
        reason = exc.reason.value
        with self._rejections_lock:
            count, _ = self._rejections.get(reason, (0, ""))
            self._rejections[reason] = (count + 1, str(exc))
        self._metrics.pushes.labels("unverified", reason).inc()
        log.warning("push_rejected", reason=reason, detail=str(exc), peer=request.remote)
        return web.Response(status=exc.reason.status, text=f"{reason}: {exc}\n")
