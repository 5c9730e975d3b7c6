"""A loopback HTTP simulator of ``POST /api/v3/customer/list-file-of-customer``.

It checks the request the way the real API does (sign over the exact raw bytes, timestamp window),
serves pages from a ``SimDataset`` newest first, and can misbehave on purpose: rate limits, a
skewed clock, latency and injected faults. Admin routes under ``/_sim/`` let tests that drive a
CLI subprocess inspect and steer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import random
import time
from email.utils import formatdate
from typing import Any

from aiohttp import web

from sync.api.signing import sign
from sync.domain.chinatime import parse_china_time
from sync.sim import files
from sync.sim.config import SimConfig
from sync.sim.dataset import SimCustomer, SimDataset
from sync.sim.faults import FaultPolicy
from sync.sim.lateness import LoopLateness
from sync.sim.pushes import PushSender, SentPush
from sync.sim.search import CustomerDirectory
from sync.sim.stats import Admission, CustomerKey, SimStats, TokenBucket

ENDPOINT = "/api/v3/customer/list-file-of-customer"
SEARCH_ENDPOINT = "/api/v3/customer/search"
PUSH_REGISTER_ENDPOINT = "/api/v2/push-register"
# What the simulated search answers to a request that pages past its cap (the real code is not
# known; any non-zero code must be named in the client's message).
CODE_PAST_CAP = 40_030
JSON_TYPE = "application/json; charset=utf-8"
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_ADVANCE_KEYS = frozenset({"new_rate", "late_rate", "delete_rate", "update_rate", "customers"})


class _BadQuery(ValueError):
    pass


def encode_json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Simulator:
    """Serves one dataset; ``start``/``stop`` run it on a loopback port."""

    def __init__(self, dataset: SimDataset, config: SimConfig | None = None) -> None:
        self.dataset = dataset
        self.config = config or SimConfig()
        self.stats = SimStats()
        self.directory = CustomerDirectory(dataset)
        self.base_url: str | None = None
        self._faults = FaultPolicy(
            self.config.fault_probabilities(),
            seed=self.config.fault_seed,
            cap=self.config.max_faults_per_customer_page,
            burst_length=self.config.burst429_length,
        )
        self._bucket: TokenBucket | None = None
        self._bucket_settings: tuple[float | None, float] | None = None
        self._lateness: LoopLateness | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.pushes = PushSender(
            self.config.app_id, self.config.app_key, self.config.push_corp_id, seed=dataset.seed
        )
        self._push_rng = random.Random(dataset.seed)
        self._push_tasks: set[asyncio.Task[Any]] = set()

    # ----- life cycle --------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", ENDPOINT, self._handle)
        app.router.add_route("*", SEARCH_ENDPOINT, self._handle_search)
        app.router.add_post(PUSH_REGISTER_ENDPOINT, self._push_register)
        app.router.add_post("/_sim/push", self._admin_push)
        app.router.add_get("/_sim/search-customers", self._admin_search_customers)
        app.router.add_post("/_sim/search-churn", self._admin_search_churn)
        app.router.add_get(files.FILE_ROUTE + "{tail:.*}", self._serve_file)
        app.router.add_get("/_sim/stats", self._admin_stats)
        app.router.add_post("/_sim/reset-stats", self._admin_reset_stats)
        app.router.add_post("/_sim/advance", self._admin_advance)
        app.router.add_get("/_sim/config", self._admin_get_config)
        app.router.add_post("/_sim/config", self._admin_config)
        app.router.add_get("/_sim/customers.csv", self._admin_customers_csv)
        app.router.add_get("/_sim/customers.jsonl", self._admin_customers_jsonl)
        app.router.add_get("/_sim/expected-mirror", self._admin_expected_mirror)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); returns the base URL, no trailing slash."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._stopping = asyncio.Event()
        # A short shutdown timeout: stalled handlers wake on stop anyway, and tests should not
        # wait a minute for a client that went away.
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        self._stop_lateness()
        for task in list(self._push_tasks):
            task.cancel()
        await self.pushes.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def endpoint_url(self) -> str:
        if self.base_url is None:
            raise RuntimeError("simulator not started")
        return self.base_url + ENDPOINT

    def configure(self, **changes: Any) -> SimConfig:
        """Change settings while running (ValueError on unknown fields or wrong types)."""
        self.config = self.config.with_changes(changes)
        self._faults.set_probabilities(self.config.fault_probabilities())
        self._faults.set_cap(self.config.max_faults_per_customer_page)
        self._faults.burst_length = self.config.burst429_length
        if "fault_seed" in changes:
            self._faults.reseed(self.config.fault_seed)
        return self.config

    def reset_stats(self) -> None:
        self.stats.reset()

    # ----- message pushes ----------------------------------------------------------------------

    async def push(
        self,
        kind: str,
        content: object,
        *,
        msg_id: str | None = None,
        bad_sign: bool | None = None,
        duplicate: bool | None = None,
        replay: bool | None = None,
    ) -> SentPush:
        """Send one push to the registered address; a switch left None is drawn from its rate."""
        cfg = self.config
        draw = self._push_rng.random
        bad = draw() < cfg.push_bad_sign_rate if bad_sign is None else bad_sign
        twice = draw() < cfg.push_duplicate_rate if duplicate is None else duplicate
        again = draw() < cfg.push_replay_rate if replay is None else replay
        sent = await self.pushes.send(kind, content, msg_id=msg_id, bad_sign=bad, duplicate=twice)
        if again:
            await self.pushes.replay()
        return sent

    async def add_record_announced(
        self, customer_index: int, *, id_as_string: bool = False
    ) -> dict[str, Any]:
        """A new file for the customer, and (with "record" in push_events) a push naming it."""
        record = self.dataset.add_record(customer_index)
        if self._announces("record", "customer_contact_edit"):
            customer = self.dataset.customer(customer_index)
            customer_id: object = customer.customer_id
            await self.push(
                "customer_contact_edit",
                {
                    "customerId": str(customer_id) if id_as_string else customer_id,
                    "contactId": str(record["id"]),
                },
            )
        return record

    async def add_customer_announced(self, files: int = 1) -> SimCustomer:
        """A new customer with ``files`` files, and (with "customer" in push_events) its
        new_qw_customer push."""
        customer = self.dataset.add_customers(1)[0]
        for _ in range(files):
            self.dataset.add_record(customer.index)
        if self._announces("customer", "new_qw_customer"):
            await self.push(
                "new_qw_customer",
                {"externalUserId": customer.external_user_id, "qwUserId": customer.user_id},
            )
        return customer

    def _announces(self, event: str, kind: str) -> bool:
        events = {e.strip() for e in self.config.push_events.split(",")}
        return event in events and self.pushes.wants(kind)

    async def _push_register(self, request: web.Request) -> web.StreamResponse:
        body = await self._checked_body(request)
        if isinstance(body, web.Response):
            return body
        address, subscription = body.get("receiveAddress"), body.get("subscription", "")
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            return self._business(1000, "receiveAddress must be an http(s) URL", "bad_request_1000")
        if not isinstance(subscription, str):
            return self._business(1000, "subscription must be text", "bad_request_1000")
        self.pushes.register(address, subscription)
        # The confirmation push goes out after the answer, as Tanmarket's does.
        task = asyncio.get_running_loop().create_task(self.pushes.send("register", "hello"))
        self._push_tasks.add(task)
        task.add_done_callback(self._push_tasks.discard)
        return _json_response({"code": 0, "message": "success", "data": None})

    async def _admin_push(self, request: web.Request) -> web.Response:
        args = await _json_object(request)
        index = args.get("customer")
        if not isinstance(index, int) or not 0 <= index < self.dataset.customer_count:
            raise web.HTTPBadRequest(text="customer must be a customer index")
        record = await self.add_record_announced(
            index, id_as_string=bool(args.get("id_as_string", False))
        )
        return _json_response({"record_id": record["id"], "pushes": len(self.pushes.sent)})

    # ----- served files ------------------------------------------------------------------------

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        shapes = self.dataset.files
        if request.host.split(":", 1)[0] == files.OUTSIDE_HOST:
            self.stats.outside_hits += 1
        parsed = files.parse_file_path(request.path)
        if shapes is None or parsed is None:
            self.stats.file_requests["unknown"] += 1
            return self._reply(404, b"404: Not Found", "text/plain")
        record_id, size = parsed
        kind = shapes.kind(record_id)
        self.stats.file_requests[kind] += 1
        if kind == "missing" and not self.config.serve_missing_files:
            return self._reply(404, b"<html><body>404 Not Found</body></html>", "text/html")
        if kind == "html":
            return self._reply(200, files.ERROR_PAGE, "text/html; charset=utf-8")
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/octet-stream"}
        )
        if not (kind == "oversized" and record_id % 2 == 0):
            # Even oversized files come without a length: only the streamed count can stop them.
            response.content_length = size
        await response.prepare(request)
        chunks = files.file_chunks(record_id, size, duplicate=kind == "duplicate")
        try:
            for chunk in chunks:
                if kind == "slow":
                    await asyncio.sleep(self.config.slow_file_chunk_s)
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client stopped reading (a size cap, a killed archiver): its choice
        return response

    # ----- the endpoint ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.enter()
        try:
            return await self._serve(request)
        finally:
            self.stats.leave()

    async def _checked_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's JSON body once method, rate, signature and clock pass; else the
        answer the real API gives."""
        cfg = self.config
        if request.method != "POST":
            self.stats.outcome("http405")
            return self._reply(405, b"405: Method Not Allowed", "text/plain", {"Allow": "POST"})
        admission = self._admit()
        if admission == "credited":
            self.stats.stall_credited += 1
        elif admission == "refused":
            self.stats.over_limit += 1
            self.stats.outcome("http429")
            return self._reply(429, b"429: Too Many Requests", "text/plain", {"Retry-After": "1"})

        raw = await request.read()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            return self._business(1000, "bad request body", "bad_request_1000")

        headers = request.headers
        timestamp = headers.get("timestamp", "")
        expected = sign(cfg.app_id, timestamp, raw, cfg.app_key)
        # As bytes: compare_digest refuses non-ASCII str, and a header may hold anything.
        given = headers.get("sign", "").encode(errors="replace")
        if headers.get("appId") != cfg.app_id or not hmac.compare_digest(given, expected.encode()):
            return self._business(1002, "签名校验失败 (sign check failed)", "sign_error_1002")
        if not _timestamp_ok(timestamp, self._server_time(), cfg.timestamp_window_s):
            return self._business(
                1003, "请求时间戳无效 (timestamp out of range)", "time_error_1003"
            )
        return body

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        body = await self._checked_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            customer, key, size, last_id = self._parse_query(body)
        except _BadQuery as exc:
            return self._business(1000, str(exc), "bad_request_1000")

        self.stats.customer_begin(key)
        try:
            if cfg.latency_ms > 0:
                await asyncio.sleep(cfg.latency_ms / 1000)
            fault = self._faults.choose((key, last_id))
            if fault is None:
                self.stats.outcome("ok")
                return self._page(customer, size, last_id)
            self.stats.outcome(fault)
            return await self._inject(fault, request, customer, size, last_id)
        finally:
            self.stats.customer_end(key)

    # ----- the search endpoint ----------------------------------------------------------------

    async def _handle_search(self, request: web.Request) -> web.StreamResponse:
        self.stats.enter()
        try:
            return await self._serve_search(request)
        finally:
            self.stats.leave()

    async def _serve_search(self, request: web.Request) -> web.StreamResponse:
        cfg = self.config
        body = await self._checked_body(request)
        if isinstance(body, web.Response):
            return body
        self.stats.search_requests += 1
        try:
            start, end, page_no, size = _parse_search(body, cfg.search_page_size_cap)
        except _BadQuery as exc:
            return self._business(1000, str(exc), "bad_request_1000")
        if page_no * size > cfg.search_max_results:
            self.stats.search_past_cap += 1
            return self._business(
                CODE_PAST_CAP,
                f"查询结果超出上限 (pageNo × pageSize > {cfg.search_max_results})",
                "search_past_cap",
            )
        directory = self.directory
        directory.null_external_rate = cfg.search_null_external_rate
        directory.string_id_rate = cfg.search_string_id_rate
        if cfg.search_create_per_request or cfg.search_delete_per_request:
            directory.churn(cfg.search_create_per_request, cfg.search_delete_per_request)
        if cfg.latency_ms > 0:
            await asyncio.sleep(cfg.latency_ms / 1000)
        total, items = directory.query(start, end, page_no, size)
        self.stats.outcome("ok")
        self.stats.customers_served += len(items)
        data = {
            "totalCount": total,
            "totalPage": -(-total // size),
            "pageNo": page_no,
            "pageSize": size,
            "data": items,
        }
        payload = encode_json({"code": 0, "message": "success", "data": data})
        return self._reply(200, payload, JSON_TYPE)

    def _admit(self) -> Admission:
        cfg = self.config
        if cfg.rate_limit is None:
            self._bucket = None
            self._stop_lateness()
            return "admitted"
        settings = (cfg.rate_limit, cfg.effective_burst())
        now = asyncio.get_running_loop().time()
        if self._bucket is None or self._bucket_settings != settings:
            self._bucket = TokenBucket(settings[0], settings[1], now)
            self._bucket_settings = settings
        if not cfg.stall_credit:
            self._stop_lateness()
            return self._bucket.take(now)
        if self._lateness is None:
            # Ticks only while a limit is judged: an unlimited simulator has no use for them.
            self._lateness = LoopLateness()
            self._lateness.start()
        return self._bucket.take(now, self._lateness.slack(now))

    def _stop_lateness(self) -> None:
        if self._lateness is not None:
            self._lateness.stop()
            self._lateness = None

    def _parse_query(
        self, body: dict[str, Any]
    ) -> tuple[SimCustomer | None, CustomerKey, int, int | float | None]:
        customer_id = body.get("customerId")
        external = body.get("externalUserId")
        customer: SimCustomer | None
        if customer_id is not None:
            if isinstance(customer_id, str) and customer_id.isdecimal():
                customer_id = int(customer_id)
            if type(customer_id) is not int:
                raise _BadQuery("customerId must be an integer")
            customer = self.dataset.customer_by_id(customer_id)
            key: CustomerKey = customer_id
        elif external is not None:
            if not isinstance(external, str):
                raise _BadQuery("externalUserId must be a string")
            customer = self.dataset.customer_by_external(external)
            key = customer.customer_id if customer else external
        else:
            raise _BadQuery("customerId or externalUserId is required")

        size = body.get("pageSize")
        if size is None:
            size = self.config.default_page_size
        if type(size) is not int:
            raise _BadQuery("pageSize must be an integer")
        size = min(max(size, 1), self.config.page_size_cap)

        last_id = body.get("lastId")
        if isinstance(last_id, str) and last_id.isdecimal():
            last_id = int(last_id)
        if last_id is not None and (
            isinstance(last_id, bool)
            or not isinstance(last_id, int | float)
            or not math.isfinite(last_id)
        ):
            raise _BadQuery("lastId must be a number")
        return customer, key, size, last_id

    def _page_bytes(
        self, customer: SimCustomer | None, size: int, last_id: int | float | None
    ) -> tuple[bytes, int]:
        """The encoded page and how many records it holds."""
        if customer is None:
            return _encode_page(size, 0, []), 0
        if self.config.prebuilt_pages:
            return self.dataset.encoded_page(
                customer.index,
                last_id,
                size,
                lambda total, records: _encode_page(size, total, records),
            )
        # A server that caps its pages without saying so echoes the size it was asked for.
        silent_cap = self.config.silent_page_size_cap
        served = size if silent_cap is None else min(size, silent_cap)
        total, records = self.dataset.page(customer.index, last_id, served)
        return _encode_page(size, total, records), len(records)

    def _page(
        self, customer: SimCustomer | None, size: int, last_id: int | float | None
    ) -> web.Response:
        if customer is None:
            self.stats.unknown_customers += 1
        payload, count = self._page_bytes(customer, size, last_id)
        self.stats.records_served += count
        if self.dataset.files is not None and self.base_url is not None:
            # URLs inside fileContent are JSON in a JSON string: their slashes are not escaped,
            # so the placeholder hosts appear verbatim in the page.
            own = f"{self.base_url}{files.FILE_ROUTE}".encode()
            outside = own.replace(b"127.0.0.1", files.OUTSIDE_HOST.encode(), 1)
            payload = payload.replace(files.FILE_PLACEHOLDER.encode(), own).replace(
                files.OUTSIDE_PLACEHOLDER.encode(), outside
            )
        return self._reply(200, payload, JSON_TYPE)

    async def _inject(
        self,
        fault: str,
        request: web.Request,
        customer: SimCustomer | None,
        size: int,
        last_id: int | float | None,
    ) -> web.StreamResponse:
        if fault == "http500":
            return self._reply(500, b"500 Internal Server Error", "text/plain")
        if fault == "html502":
            return self._reply(502, _GATEWAY_PAGE.encode(), "text/html; charset=utf-8")
        if fault == "truncated":
            payload, _ = self._page_bytes(customer, size, last_id)
            return self._reply(200, payload[: len(payload) // 2], JSON_TYPE)
        if fault == "code1000":
            return self._business_reply(1000, "系统错误")
        if fault == "burst429":
            return self._reply(
                429, b"429: Too Many Requests", "text/plain", self._retry_after_header()
            )
        if fault == "stall":
            # Wakes early when the simulator stops, so shutdown never waits for a stall.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.stall_s)
            return self._page(customer, size, last_id)
        if fault == "reset":
            if request.transport is not None:
                request.transport.abort()
            # aiohttp sees the closed transport when writing this and drops it quietly.
            return web.Response(status=200)
        raise AssertionError(f"unhandled fault {fault}")

    def _retry_after_header(self) -> dict[str, str]:
        return {"Retry-After": str(self._faults.retry_after())}

    def _business(self, code: int, message: str, outcome: str) -> web.Response:
        self.stats.outcome(outcome)
        return self._business_reply(code, message)

    def _business_reply(self, code: int, message: str) -> web.Response:
        return self._reply(
            200, encode_json({"code": code, "message": message, "data": None}), JSON_TYPE
        )

    def _server_time(self) -> float:
        return time.time() + self.config.clock_offset_s

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        all_headers = {
            "Content-Type": content_type,
            # Set explicitly: aiohttp would otherwise stamp the true time, not the skewed one.
            "Date": formatdate(self._server_time(), usegmt=True),
        }
        if headers:
            all_headers.update(headers)
        return web.Response(status=status, body=body, headers=all_headers)

    # ----- admin -------------------------------------------------------------------------------

    async def _admin_stats(self, request: web.Request) -> web.Response:
        snapshot = self.stats.as_dict()
        snapshot["generation"] = self.dataset.generation
        return _json_response(snapshot)

    async def _admin_reset_stats(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return _json_response({"ok": True})

    async def _admin_advance(self, request: web.Request) -> web.Response:
        args = await _json_object(request)
        unknown = set(args) - _ADVANCE_KEYS
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown advance arguments: {sorted(unknown)}")
        generation = self.dataset.advance(**args)
        return _json_response({"generation": generation})

    async def _admin_get_config(self, request: web.Request) -> web.Response:
        return _json_response(self.config.public_dict())

    async def _admin_config(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            config = self.configure(**changes)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return _json_response(config.public_dict())

    async def _admin_customers_csv(self, request: web.Request) -> web.Response:
        return web.Response(text=self.dataset.customers_csv(), content_type="text/csv")

    async def _admin_customers_jsonl(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.dataset.customers_jsonl(), content_type="application/x-ndjson"
        )

    async def _admin_search_customers(self, request: web.Request) -> web.Response:
        customers = self.directory.expected_customers()
        return _json_response({"customers": list(customers.values())})

    async def _admin_search_churn(self, request: web.Request) -> web.Response:
        args = await _json_object(request)
        create, delete = args.get("create", 0), args.get("delete", 0)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (create, delete)
        ):
            raise web.HTTPBadRequest(text="create and delete must be non-negative integers")
        self.directory.churn(create, delete)
        return _json_response({"ok": True})

    async def _admin_expected_mirror(self, request: web.Request) -> web.Response:
        records = list(self.dataset.expected_mirror().values())
        return _json_response({"generation": self.dataset.generation, "records": records})


def _encode_page(size: int, total: int, records: list[dict[str, Any]]) -> bytes:
    data = {
        "totalCount": total,
        "totalPage": -(-total // size),
        "pageNo": 0,
        "pageSize": size,
        "result": records,
    }
    return encode_json({"code": 0, "message": "success", "data": data})


def _parse_search(
    body: dict[str, Any], page_size_cap: int
) -> tuple[int | None, int | None, int, int]:
    """(createTime start, end, pageNo, pageSize) of a search body; seconds since the epoch."""
    page_no = body.get("pageNo", 1)
    size = body.get("pageSize", 10)
    if type(page_no) is not int or page_no < 1:
        raise _BadQuery("pageNo must be a positive integer")
    if type(size) is not int or size < 1:
        raise _BadQuery("pageSize must be a positive integer")
    size = min(size, page_size_cap)
    window = body.get("createTime")
    if window is None:
        return None, None, page_no, size
    if not isinstance(window, dict):
        raise _BadQuery("createTime must be an object with start and end")
    bounds: list[int | None] = []
    for name in ("start", "end"):
        value = window.get(name)
        if value is None:
            bounds.append(None)
            continue
        instant = parse_china_time(value)
        if instant is None:
            raise _BadQuery(f"createTime.{name} must be YYYY-MM-DD HH:MM:SS")
        bounds.append(int(instant.timestamp()))
    return bounds[0], bounds[1], page_no, size


def _timestamp_ok(timestamp: str, server_time: float, window_s: float) -> bool:
    if not (timestamp.isascii() and timestamp.isdecimal()):
        return False
    return abs(int(timestamp) / 1000 - server_time) <= window_s


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise web.HTTPBadRequest(text="body is not JSON") from exc
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return value


def _json_response(payload: object) -> web.Response:
    return web.Response(body=encode_json(payload), headers={"Content-Type": JSON_TYPE})
