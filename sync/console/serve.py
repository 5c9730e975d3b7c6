"""``tanma-sync console``: the console alone, for a mirror without a daemon, on
SYNC_CONSOLE_HOST:SYNC_CONSOLE_PORT until SIGINT or SIGTERM (then exit 0, as the daemon)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from sync.config.settings import Settings
from sync.console.app import console_app, mount
from sync.console.auth import ConsoleCredentials, check_binding
from sync.console.render import BASE
from sync.domain.errors import ConfigError
from sync.domain.exits import ExitCode
from sync.mirror.store import MirrorStore


def console_credentials(settings: Settings) -> ConsoleCredentials:
    """The credentials, refused (ConfigError) when the bind address needs some and has none."""
    credentials = ConsoleCredentials.from_settings(settings)
    check_binding(settings.sync_console_host, credentials, "SYNC_CONSOLE_HOST")
    return credentials


async def serve_console(
    settings: Settings,
    store: MirrorStore,
    credentials: ConsoleCredentials,
    announce: Callable[[str], None],
) -> int:
    root = web.Application()

    async def to_console(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{BASE}/")

    root.router.add_get("/", to_console)
    mount(root, console_app(store, settings, credentials))
    runner = web.AppRunner(root, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = settings.sync_console_host, settings.sync_console_port
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"setting SYNC_CONSOLE_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    sockets = getattr(site._server, "sockets", None) or []  # the bound port, for port 0
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = f"[{host}]" if ":" in host else host
    auth = "credentials required" if credentials.required else "no credentials (loopback)"
    announce(f"console on http://{shown}:{bound}{BASE}/ ({auth}); Ctrl-C stops it")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return ExitCode.OK
