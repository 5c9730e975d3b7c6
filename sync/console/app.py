"""The operator console as an aiohttp application, mounted at /console: the daemon's status
listener adds it beside /healthz and /metrics, and ``tanma-sync console`` serves it alone.
Read-only pages rendered on the server; no script, so every page works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sync.config.settings import Settings
from sync.console.auth import (
    SESSION_COOKIE,
    Access,
    ConsoleCredentials,
    judge,
    session_value,
    token_matches,
)
from sync.console.panels import OVERVIEW_PANELS, STATE_CSS, PanelContext
from sync.console.params import BadParameter, choice, customers_query, page_at
from sync.console.render import BASE, environment
from sync.domain.durations import format_duration
from sync.mirror.console_reads import STATES
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.store import MirrorStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STORE = web.AppKey("store", MirrorStore)
_SETTINGS = web.AppKey("settings", Settings)
_CREDENTIALS = web.AppKey("credentials", ConsoleCredentials)
# Everything the pages need comes from this origin; no inline script or style runs.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# What a sign-in page itself needs; nothing here reads the mirror.
_STATIC = {"console.css": "text/css", "favicon.svg": "image/svg+xml"}
_OPEN_PATHS = frozenset({f"{BASE}/login", *(f"{BASE}/static/{name}" for name in _STATIC)})
_env = environment()


def console_app(
    store: MirrorStore, settings: Settings, credentials: ConsoleCredentials
) -> web.Application:
    """The console's pages, to be mounted at ``/console`` (``add_subapp``)."""
    app = web.Application(middlewares=[_guard])
    app[_STORE] = store
    app[_SETTINGS] = settings
    app[_CREDENTIALS] = credentials
    app.router.add_get("/", _overview)
    app.router.add_get("/customers", _customers)
    app.router.add_get("/customers/{ref}", _customer)
    app.router.add_get("/runs", _runs)
    app.router.add_get("/rejected", _rejected)
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/static/{name}", _static)
    return app


def mount(root: web.Application, console: web.Application) -> None:
    root.add_subapp(BASE, console)


# -- the guard -----------------------------------------------------------------------------


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Credentials first; then the page, its failures as one-line pages; security headers
    on whatever goes out."""
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_page(exc.status, exc.reason)
    except BadParameter as exc:
        response = _error_page(400, str(exc))
    except DATABASE_ERRORS as exc:
        response = _error_page(503, f"database: {describe_db_error(exc)}")
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _OPEN_PATHS:
        return await handler(request)
    credentials = request.app[_CREDENTIALS]
    access = judge(
        credentials, request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
    )
    if access is Access.GRANTED:
        return await handler(request)
    if access is Access.MISSING and credentials.token and request.method == "GET":
        raise web.HTTPSeeOther(f"{BASE}/login?{urlencode({'next': request.path_qs})}")
    response = _error_page(401, "the console needs credentials")
    if credentials.basic:
        response.headers["WWW-Authenticate"] = 'Basic realm="tanma-sync console", charset="UTF-8"'
    else:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tanma-sync console"'
    return response


def _error_page(status: int, message: str) -> web.Response:
    return _page("error.html", status=status, code=status, message=message)


def _page(template: str, *, status: int = 200, **values: Any) -> web.Response:
    body = _env.get_template(template).render(state_css=STATE_CSS, **values)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


# -- pages ---------------------------------------------------------------------------------


async def _overview(request: web.Request) -> web.Response:
    store, settings = request.app[_STORE], request.app[_SETTINGS]
    now = await store.console.now()
    context = PanelContext(store, settings, now)
    panels = [(panel, await panel.load(context)) for panel in OVERVIEW_PANELS]
    return _page("overview.html", panels=panels, now=now, settings=_shown_settings(settings))


async def _customers(request: web.Request) -> web.Response:
    store, settings = request.app[_STORE], request.app[_SETTINGS]
    query = customers_query(request.query)
    now = await store.console.now()
    page = await store.console.customers(query, now, settings.sync_max_staleness)
    return _page(
        "customers.html",
        page=page,
        query=query,
        states=STATES,
        now=now,
        links=_paging_links(request, page, lambda row: row["id"]),
    )


async def _customer(request: web.Request) -> web.Response:
    store, settings = request.app[_STORE], request.app[_SETTINGS]
    ref_text = request.match_info["ref"]
    if not (ref_text.isascii() and ref_text.isdigit()) or len(ref_text) > 18:
        raise BadParameter(f"customer {ref_text[:40]!r}: not a customer row number")
    ref = int(ref_text)
    now = await store.console.now()
    customer = await store.console.customer(ref, now, settings.sync_max_staleness)
    if not customer:
        raise web.HTTPNotFound(reason=f"no customer row {ref}")
    at = page_at(request.query)
    files = await store.console.customer_files(ref, at.after, at.before, at.limit)
    rejected = await store.console.rejected_records(ref, None, None, 20)
    pushes = await store.push.for_customer(ref)
    return _page(
        "customer.html",
        c=customer,
        files=files,
        rejected=rejected,
        pushes=pushes,
        now=now,
        links=_paging_links(request, files, lambda row: row["id"]),
    )


async def _runs(request: web.Request) -> web.Response:
    store = request.app[_STORE]
    modes, statuses = await store.console.run_kinds()
    mode = choice(request.query, "mode", modes)
    status = choice(request.query, "status", statuses)
    at = page_at(request.query)
    page = await store.console.runs(mode, status, at.after, at.before, at.limit)
    now = await store.console.now()
    return _page(
        "runs.html",
        page=page,
        modes=modes,
        statuses=statuses,
        mode=mode,
        run_status=status,
        now=now,
        links=_paging_links(request, page, lambda row: row["id"]),
    )


async def _rejected(request: web.Request) -> web.Response:
    store = request.app[_STORE]
    kind = choice(request.query, "kind", ("records", "customers")) or "records"
    at = page_at(request.query)
    if kind == "records":
        page = await store.console.rejected_records(None, at.after, at.before, at.limit)
    else:
        page = await store.console.rejected_customers(at.after, at.before, at.limit)
    reasons = await store.console.rejected_reasons()
    return _page(
        "rejected.html",
        page=page,
        kind=kind,
        reasons=reasons,
        links=_paging_links(request, page, lambda row: row["id"]),
    )


# -- signing in ----------------------------------------------------------------------------


async def _login_form(request: web.Request) -> web.Response:
    return _page("login.html", next=_safe_next(request.query.get("next")), failed=False)


async def _login(request: web.Request) -> web.StreamResponse:
    credentials = request.app[_CREDENTIALS]
    form = await request.post()
    offered = form.get("token")
    target = _safe_next(str(form.get("next") or ""))
    if not isinstance(offered, str) or not token_matches(credentials, offered):
        return _page("login.html", status=401, next=target, failed=True)
    response = _see_other(target)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(credentials.token),
        path=BASE,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def _logout(_request: web.Request) -> web.StreamResponse:
    response = _see_other(f"{BASE}/login")
    response.del_cookie(SESSION_COOKIE, path=BASE)
    return response


def _see_other(location: str) -> web.Response:
    # A plain response that carries the session cookie (aiohttp deprecates returning its
    # HTTP exceptions as responses).
    return web.Response(status=303, headers={"Location": location})


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith(f"{BASE}/") and "\\" not in target and "//" not in target:
        return target
    return f"{BASE}/"


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound(reason=f"no file {name[:60]!r} here")
    text = resources.files("sync.console").joinpath("static", name).read_text("utf-8")
    return web.Response(text=text, content_type=_STATIC[name], charset="utf-8")


# -- helpers -------------------------------------------------------------------------------


def _paging_links(
    request: web.Request, page: Any, key: Callable[[dict[str, Any]], int]
) -> dict[str, str | None]:
    """The previous and next pages' URLs, keeping the other parameters."""
    kept = {k: v for k, v in request.query.items() if k not in ("after", "before")}

    def link(**at: int) -> str:
        return f"{request.path}?{urlencode({**kept, **at})}"

    rows = page.rows
    return {
        "previous": link(before=key(rows[0])) if rows and page.more_before else None,
        "next": link(after=key(rows[-1])) if rows and page.more_after else None,
        "first": f"{request.path}?{urlencode(kept)}" if page.more_before else None,
    }


def _shown_settings(settings: Settings) -> list[tuple[str, str]]:
    """The settings the overview states, none of them secret."""
    return [
        ("SYNC_MAX_STALENESS", format_duration(settings.sync_max_staleness)),
        ("SYNC_RATE_LIMIT", f"{settings.sync_rate_limit:g} requests/s"),
        ("SYNC_SCHEDULE", settings.sync_schedule),
        ("SYNC_LEASE_TTL", format_duration(settings.sync_lease_ttl)),
    ]
