"""The HTTP shell around the list endpoint: signs, rate-limits, retries, classifies.

One ``RequestPacer`` caps the request rate for the whole process (every attempt, retries
included); the engine's worker count caps concurrency. What an answer *means* is decided by the
pure ``classify_response``; this module only moves bytes and counts.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import structlog
from aiohttp.helpers import get_env_proxy_for_url
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)
from yarl import URL

from sync.api.pacing import RequestPacer
from sync.api.responses import (
    FilePage,
    SearchPage,
    classify_plain_response,
    classify_response,
    classify_search_response,
)
from sync.api.signing import encode_body, signed_headers
from sync.config.settings import Settings
from sync.domain import breaker as kinds
from sync.domain.breaker import CircuitBreaker
from sync.domain.chinatime import format_china_time
from sync.domain.customers import CustomerKey
from sync.domain.discovery import SearchQuery
from sync.domain.errors import (
    ApiUnreachable,
    ClockSkew,
    ConfigError,
    CustomerError,
    FatalError,
    TransientError,
)
from sync.domain.records import is_ascii_digits

LIST_FILES_PATH = "/api/v3/customer/list-file-of-customer"
SEARCH_PATH = "/api/v3/customer/search"
PUSH_REGISTER_PATH = "/api/v2/push-register"
# A Retry-After longer than this is capped: a worker should not sleep for hours on one customer.
MAX_RETRY_AFTER_S = 300.0

log = structlog.get_logger("tanma_sync.client")

_Answer = TypeVar("_Answer", FilePage, SearchPage, bool)


class TanmaClient:
    """Use as ``async with TanmaClient(settings) as client``."""

    def __init__(self, settings: Settings) -> None:
        settings.require_credentials()
        self._settings = settings
        self._app_id = settings.tanma_app_id
        self._app_key = settings.tanma_app_key.get_secret_value()
        self._url = settings.tanma_base_url + LIST_FILES_PATH
        self._search_url = settings.tanma_base_url + SEARCH_PATH
        self._pacer = RequestPacer(settings.sync_rate_limit, burst=settings.sync_rate_burst)
        self._backoff = wait_random_exponential(
            multiplier=settings.sync_backoff_base, max=settings.sync_backoff_max
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy: URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None
        self.clock_offset_ms = 0
        # Set once an answer shows our clock is accepted (or corrected); until then requests go
        # one at a time, see _post_once.
        self._clock_known = asyncio.Event()
        self._first_requests = asyncio.Lock()
        self.requests = 0
        self.retries = 0
        self.outcomes: Counter[str] = Counter()
        self.rate_limit_waits = 0
        # The current pass's breaker (the engine sets one per pass): told of every attempt,
        # and once open, no request is sent.
        self.breaker: CircuitBreaker | None = None

    @property
    def host(self) -> str:
        """The API's host (and port, when not the scheme's default), as messages name it."""
        url = URL(self._url)
        return f"{url.host}:{url.explicit_port}" if url.explicit_port else str(url.host)

    def set_rate_limit(self, rate: float) -> None:
        """Change the pace from the next request on (a daemon's share of the app's limit moves
        with the number of live daemons)."""
        if rate <= 0:
            raise ValueError("rate limit must be positive")
        self._pacer.set_rate(rate)

    @property
    def failed_requests(self) -> int:
        return self.requests - self.outcomes["ok"]

    async def __aenter__(self) -> TanmaClient:
        timeout = aiohttp.ClientTimeout(
            total=self._settings.tanma_request_timeout,
            connect=min(10.0, self._settings.tanma_request_timeout),
        )
        connector = aiohttp.TCPConnector(
            limit=self._settings.sync_concurrency * 2, ssl=self._ssl_context()
        )
        # Resolved once, as aiohttp's trust_env would: it looks the proxy (and ~/.netrc) up in
        # a worker thread on every request, two thread hops between the pacer's slot and the
        # socket write. The client only ever calls one URL, so one look-up serves them all.
        self._proxy, self._proxy_auth = proxy_from_environment(self._url)
        if self._proxy is not None:
            log.info("using_proxy", proxy=str(self._proxy.with_user(None)))
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=connector, raise_for_status=False
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _ssl_context(self) -> ssl.SSLContext | bool:
        bundle = self._settings.tanma_ca_bundle
        if bundle is None:
            return True  # aiohttp's default: verify against the system's trust store
        try:
            context = ssl.create_default_context(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"setting TANMA_CA_BUNDLE: cannot load {bundle}: {exc}") from None
        context.load_default_certs()  # the bundle adds to the system's trust store
        return context

    async def list_files(
        self, customer: CustomerKey, last_id: int | None, page_size: int
    ) -> FilePage:
        """One page of a customer's files, retried on transient failures."""
        payload = request_payload(customer, last_id, page_size)
        retrying = AsyncRetrying(
            stop=_AttemptBudget(self._settings.sync_max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=self._before_retry(customer),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post_once(self._url, payload, classify_response, customer.ref)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def search_customers(self, query: SearchQuery) -> SearchPage:
        """One page of the customer search, retried on transient failures."""
        payload = search_payload(query)
        retrying = AsyncRetrying(
            stop=_AttemptBudget(self._settings.sync_max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=self._before_retry_label("discovery"),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post_once(
                    self._search_url, payload, classify_search_response, None
                )
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def register_push(self, address: str, subscription: str) -> None:
        """Ask Tanmarket to push ``subscription`` (comma-separated types) to ``address``;
        retried on transient failures like every call."""
        payload = {"receiveAddress": address, "subscription": subscription}
        url = self._settings.tanma_base_url + PUSH_REGISTER_PATH
        retrying = AsyncRetrying(
            stop=_AttemptBudget(self._settings.sync_max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=self._before_retry_label("push registration"),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post_once(url, payload, classify_plain_response, None)
                return

    async def _post_once(
        self,
        url: str,
        payload: dict[str, Any],
        classify: Callable[..., _Answer],
        customer_ref: int | None,
    ) -> _Answer:
        if not self._clock_known.is_set():
            # If our clock is off, every request sent before the first 1003 comes back (and
            # corrects it) is refused too: one per worker. So the first ones go one at a time.
            async with self._first_requests:
                if not self._clock_known.is_set():
                    return await self._watched_attempt(url, payload, classify, customer_ref)
        return await self._watched_attempt(url, payload, classify, customer_ref)

    async def _watched_attempt(
        self,
        url: str,
        payload: dict[str, Any],
        classify: Callable[..., _Answer],
        customer_ref: int | None,
    ) -> _Answer:
        """One paced attempt. A file-list attempt (one with a customer) consults the pass's
        breaker first and tells it how it went; the breaker watches file passes only."""
        breaker = self.breaker if customer_ref is not None else None
        self._refuse_if_open(breaker)
        if await self._pacer.acquire():
            self.rate_limit_waits += 1
        # The pacer may have kept this attempt waiting while the breaker tripped.
        self._refuse_if_open(breaker)
        try:
            page = await self._attempt(url, payload, classify)
        except TransientError as exc:
            if breaker is not None and customer_ref is not None:
                self._tell_breaker(breaker, exc, customer_ref)
            raise
        except CustomerError:
            if breaker is not None:
                breaker.succeeded(now=time.monotonic())  # an answer, if not a usable one
            raise
        if breaker is not None:
            breaker.succeeded(now=time.monotonic())
        return page

    def _tell_breaker(
        self, breaker: CircuitBreaker, error: TransientError, customer_ref: int
    ) -> None:
        now = time.monotonic()
        if error.outage_kind is None:
            breaker.succeeded(now=now)  # the API answered (a 429, a busy code): it is there
            return
        tripped = breaker.failed(error.outage_kind, str(error), customer_ref, now=now)
        if tripped is not None:
            log.error("circuit_open", host=self.host, reason=tripped.kind, detail=tripped.detail)

    @staticmethod
    def _refuse_if_open(breaker: CircuitBreaker | None) -> None:
        if breaker is not None and breaker.tripped is not None:
            raise ApiUnreachable(str(breaker.tripped))

    async def _attempt(
        self, url: str, payload: dict[str, Any], classify: Callable[..., _Answer]
    ) -> _Answer:
        assert self._session is not None, "use TanmaClient as an async context manager"
        # Serialised once; these exact bytes are signed and sent.
        body = encode_body(payload)
        headers = signed_headers(
            self._app_id,
            self._app_key,
            body,
            int(time.time() * 1000) + self.clock_offset_ms,
            send_app_key=self._settings.tanma_send_app_key_header,
        )
        self.requests += 1
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as response:
                content = await self._read_limited(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                server_ms = parse_http_date(response.headers.get("Date"))
                status = response.status
        except TimeoutError:
            self.outcomes["timeout"] += 1
            raise _outage(
                kinds.KIND_TIMEOUT, f"no answer within {self._settings.tanma_request_timeout:g}s"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FatalError(
                f"the TLS certificate of {exc.host} is not trusted ({exc.certificate_error}); "
                "set TANMA_CA_BUNDLE to a CA file that signs it"
            ) from None
        except aiohttp.InvalidURL:
            raise ConfigError(
                f"setting TANMA_BASE_URL: {self._settings.tanma_base_url!r} is not a valid URL"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            self.outcomes["connection"] += 1
            kind, detail = connection_failure(exc)
            raise _outage(kind, f"{kind} ({detail})") from None
        try:
            page = classify(status, content, retry_after=retry_after, server_time_ms=server_ms)
        except ClockSkew as exc:
            self.outcomes["clock_skew"] += 1
            if exc.server_time_ms is not None:
                self.clock_offset_ms = exc.server_time_ms - int(time.time() * 1000)
                log.warning("clock_corrected", offset_ms=self.clock_offset_ms)
                self._clock_known.set()
            raise
        except TransientError as exc:
            self.outcomes[f"http_{status}" if status != 200 else "bad_answer"] += 1
            if status >= 500:
                exc.outage_kind = kinds.KIND_SERVER
            raise
        except Exception:
            self.outcomes["refused"] += 1
            raise
        self.outcomes["ok"] += 1
        self._clock_known.set()
        return page

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._settings.sync_max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise CustomerError(
                f"response of {response.content_length} bytes refused "
                f"(SYNC_MAX_RESPONSE_BYTES={limit})"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise CustomerError(f"response larger than SYNC_MAX_RESPONSE_BYTES={limit} refused")
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if _clock_corrected(error):
            return 0.0  # the next attempt should pass at once
        backoff = self._backoff(state)
        retry_after = getattr(error, "retry_after", None)
        # A Retry-After of zero (or in the past) still backs off: the server is under load.
        return max(backoff, retry_after or 0.0)

    def _before_retry(self, customer: CustomerKey) -> Callable[[RetryCallState], None]:
        return self._before_retry_label(customer.label)

    def _before_retry_label(self, label: str) -> Callable[[RetryCallState], None]:
        def hook(state: RetryCallState) -> None:
            self.retries += 1
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info(
                "retrying",
                customer=label,
                attempt=state.attempt_number,
                reason=str(error),
                wait_s=round(wait, 3),
            )

        return hook


class _AttemptBudget:
    """tenacity's ``stop`` for one request: SYNC_MAX_ATTEMPTS attempts, plus one after a 1003
    that corrected our clock. That refusal was about our clock, not the server's health, so it
    should not cost a customer its page when SYNC_MAX_ATTEMPTS is 1. Once per request: a server
    that answers 1003 every time still runs the budget out."""

    def __init__(self, max_attempts: int) -> None:
        self._max_attempts = max_attempts
        self._extra_used = False

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if not self._extra_used and _clock_corrected(error):
            self._extra_used = True
            return False
        counted = state.attempt_number - (1 if self._extra_used else 0)
        return counted >= self._max_attempts


def _outage(kind: str, message: str) -> TransientError:
    error = TransientError(message)
    error.outage_kind = kind
    return error


def connection_failure(exc: BaseException) -> tuple[str, str]:
    """The breaker's kind of a connection-level failure, and a short wording of it."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return kinds.KIND_DNS, _os_wording(exc.os_error)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return kinds.KIND_TLS, type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return kinds.KIND_REFUSED, _os_wording(exc.os_error)
        return kinds.KIND_CONNECTION, _os_wording(exc.os_error)
    return kinds.KIND_CONNECTION, type(exc).__name__


def _os_wording(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _clock_corrected(error: BaseException | None) -> bool:
    """A 1003 that carried the server's time, so the clock offset was just set from it."""
    return isinstance(error, ClockSkew) and error.server_time_ms is not None


def proxy_from_environment(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for ``url`` (None when NO_PROXY exempts its host
    or none is set), with its credentials from the proxy URL or ~/.netrc: aiohttp's own rules."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def request_payload(customer: CustomerKey, last_id: int | None, page_size: int) -> dict[str, Any]:
    """The request body: whatever identifies the customer, the page size and the cursor."""
    payload: dict[str, Any] = {}
    if customer.customer_id is not None:
        payload["customerId"] = customer.customer_id
    if customer.external_user_id is not None:
        payload["externalUserId"] = customer.external_user_id
    if customer.user_id is not None:
        payload["userId"] = customer.user_id
    if customer.sales_id is not None:
        payload["salesId"] = customer.sales_id
    payload["pageSize"] = page_size
    if last_id is not None:
        payload["lastId"] = last_id
    return payload


def search_payload(query: SearchQuery) -> dict[str, Any]:
    """The search body: the page, and the createTime window in China time (inclusive ends)."""
    payload: dict[str, Any] = {"pageNo": query.page_no, "pageSize": query.page_size}
    if query.window is not None:
        payload["createTime"] = {
            "start": format_china_time(datetime.fromtimestamp(query.window.start, UTC)),
            "end": format_china_time(datetime.fromtimestamp(query.window.end, UTC)),
        }
    return payload


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if is_ascii_digits(value):
        seconds = float(value) if len(value) <= 12 else MAX_RETRY_AFTER_S
    else:
        when = parse_http_date(value)
        if when is None:
            return None
        seconds = max(0.0, when / 1000 - time.time())
    return min(seconds, MAX_RETRY_AFTER_S)


def parse_http_date(value: str | None) -> int | None:
    """Epoch milliseconds of an HTTP date header, or None."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
