"""The object store behind the archive, through obstore: a directory (``file:///…``) or an
S3-compatible bucket (``s3://bucket/prefix``). A thin shell; the key layout is in layout.py.

A download streams into a temporary object under ``tmp/``. Only when it is complete and hashed
is it moved under its content key: a rename on a directory (atomic), a server-side copy on S3
(the copy appears whole or not at all) followed by deleting the temporary. A crash at any
instant leaves at most a temporary, which later runs delete once it is a day old.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import LocalStore, S3Store

from sync.archive import layout
from sync.archive.location import ArchiveLocation
from sync.archive.outcomes import ArchiveFailure, Reason
from sync.domain.errors import FatalError

if TYPE_CHECKING:  # the type exists only in obstore's stubs
    from obstore.store import ClientConfig

# Parts of a multipart upload are sent when this much is buffered (S3 needs at least 5 MiB).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
TEMP_MAX_AGE = timedelta(days=1)
STORE_ERRORS: tuple[type[BaseException], ...] = (ObstoreError, OSError)


def open_object_store(
    location: ArchiveLocation,
    *,
    endpoint: str = "",
    region: str = "",
    access_key_id: str = "",
    secret_access_key: str = "",
) -> Any:
    if location.scheme == "file":
        return LocalStore(location.root, mkdir=True)
    options: dict[str, Any] = {}
    if endpoint:
        options["endpoint"] = endpoint
    if region:
        options["region"] = region
    if access_key_id:
        options["access_key_id"] = access_key_id
    if secret_access_key:
        options["secret_access_key"] = secret_access_key
    client_options: ClientConfig | None = (
        {"allow_http": True} if endpoint.startswith("http://") else None
    )
    return S3Store(
        location.root,
        prefix=location.prefix or None,
        # Path-style requests: what MinIO, SeaweedFS and Ceph serve without DNS per bucket.
        virtual_hosted_style_request=False,
        client_options=client_options,
        **options,
    )


class TempObject:
    """One download in progress: ``write`` chunks, then ``ArchiveObjects.publish`` it, or
    ``discard`` it."""

    def __init__(self, store: Any, key: str) -> None:
        self.key = key
        self._store = store
        self._writer: Any = obstore.open_writer_async(store, key, buffer_size=WRITE_BUFFER_BYTES)
        self._closed = False

    async def write(self, chunk: bytes) -> None:
        try:
            await self._writer.write(chunk)
        except STORE_ERRORS as exc:
            raise ArchiveFailure(Reason.STORE, f"writing {self.key}: {_describe(exc)}") from None

    async def finish(self) -> None:
        self._closed = True
        try:
            await self._writer.close()
        except STORE_ERRORS as exc:
            raise ArchiveFailure(Reason.STORE, f"writing {self.key}: {_describe(exc)}") from None

    async def discard(self) -> None:
        # The writer has no abort: closing completes what was written, which is then deleted.
        with contextlib.suppress(*STORE_ERRORS):
            if not self._closed:
                self._closed = True
                await self._writer.close()
        with contextlib.suppress(*STORE_ERRORS):
            await obstore.delete_async(self._store, self.key)


class ArchiveObjects:
    def __init__(self, store: Any, location: ArchiveLocation) -> None:
        self.store = store
        self.location = location

    def begin(self) -> TempObject:
        return TempObject(self.store, layout.temp_key())

    async def publish(self, temp: TempObject, sha256_hex: str) -> bool:
        """Move a finished download under its content key; False when those bytes were
        already there (the temporary is dropped)."""
        final = layout.content_key(sha256_hex)
        try:
            if await self.exists(final):
                await obstore.delete_async(self.store, temp.key)
                return False
            await obstore.rename_async(self.store, temp.key, final, overwrite=True)
            return True
        except STORE_ERRORS as exc:
            raise ArchiveFailure(Reason.STORE, f"publishing {final}: {_describe(exc)}") from None

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return False
        return True

    async def check(self) -> None:
        """Write and delete a probe object, so a wrong bucket, endpoint or key stops the
        command with one line instead of failing every file."""
        key = layout.temp_key()
        try:
            await obstore.put_async(self.store, key, b"tanma-sync probe")
            await obstore.delete_async(self.store, key)
        except STORE_ERRORS as exc:
            raise FatalError(
                f"archive store {self.location.describe()}: {_describe(exc)} "
                "(check SYNC_ARCHIVE_URL and the SYNC_ARCHIVE_S3_* settings)"
            ) from None

    async def sweep_temporaries(self, now: datetime | None = None) -> int:
        """Delete temporaries older than a day (downloads whose process died)."""
        cutoff = (now or datetime.now(UTC)) - TEMP_MAX_AGE
        removed = 0
        try:
            async for batch in obstore.list(self.store, layout.TEMP_ROOT + "/", chunk_size=500):
                for meta in batch:
                    if meta["last_modified"] < cutoff:
                        with contextlib.suppress(FileNotFoundError):
                            await obstore.delete_async(self.store, meta["path"])
                            removed += 1
        except FileNotFoundError:
            return removed
        return removed


def _describe(exc: BaseException) -> str:
    # obstore's messages carry a multi-line debug dump; the first line is the message.
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
