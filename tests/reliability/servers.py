"""Loopback servers the security tests need and the simulator does not offer: any aiohttp app
on its own thread (optionally over TLS), and certificates made with the openssl command."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiohttp import web

from tests.reliability.loop_thread import LoopThread


class AppThread(LoopThread):
    """``with AppThread(app, ssl_context=...) as server:`` serves ``app`` on 127.0.0.1 until exit;
    ``server.base_url`` is http:// or https:// accordingly."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__("app")
        self._app = app
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def __enter__(self) -> AppThread:
        self._start_loop()
        self.base_url = self._call(self._start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            self._call(self._runner.cleanup())
        self._stop_loop()

    async def _start(self) -> str:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{port}"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    assert tool, "the openssl command is needed to make test certificates (apt-get install openssl)"
    subprocess.run([tool, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Certificate:
    """A self-signed certificate authority."""
    cert, key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name} test CA", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return Certificate(cert, key)


def make_server_cert(directory: Path, ca: Certificate, name: str, san: str) -> Certificate:
    """A server certificate for ``san`` (e.g. ``IP:127.0.0.1``), signed by ``ca``."""
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr), cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    return Certificate(cert, key)
