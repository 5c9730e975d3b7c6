"""The same backfill done with dlt's REST API source, as a user of a general loader would write it.

Run as ``python -m bench.dlt_pipeline BASE_URL DATABASE_URL CUSTOMERS_CSV`` (a child process,
so dlt's threads and memory stay out of the measuring process); prints one JSON line with the
records loaded and the seconds the pipeline took. Needs the bench extra (``pip install
-e '.[bench]'``).

It uses what dlt offers for such an API: a custom auth class that signs each request body
(the algorithm of sync/api/signing.py), a paginator that follows ``lastId``, a parent resource of
customers whose ids are placed in the request body, and a merge on ``id``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# No telemetry and no config lookups outside this run.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
from dlt.common.configuration import configspec
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api import rest_api_resources
from requests import PreparedRequest, Request, Response
from sqlalchemy.engine import make_url

from bench.simproc import APP_ID, APP_KEY

PAGE_SIZE = 100


@configspec
class TanmaSignatureAuth(AuthConfigBase):
    """Signs the exact body bytes: sha256_hex(appId + timestamp + body + appKey)."""

    app_id: str = ""
    app_key: str = ""

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        sent = request.body
        body = sent.encode() if isinstance(sent, str) else sent if isinstance(sent, bytes) else b""
        stamp = str(int(time.time() * 1000))
        digest = hashlib.sha256(
            self.app_id.encode() + stamp.encode() + body + self.app_key.encode()
        ).hexdigest()
        request.headers.update({"appId": self.app_id, "timestamp": stamp, "sign": digest})
        return request


class LastIdPaginator(BasePaginator):
    """The next page is asked for with ``lastId`` = the id of the last record of this one; a
    short page is the last one."""

    def __init__(self, page_size: int) -> None:
        super().__init__()
        self.page_size = page_size
        self.last_id: int | None = None

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        if not data or len(data) < self.page_size:
            self._has_next_page = False
        else:
            self.last_id = data[-1]["id"]

    def update_request(self, request: Request) -> None:
        sent = request.json if isinstance(request.json, dict) else {}
        request.json = {**sent, "lastId": self.last_id}


def _destination(database_url: str) -> Any:
    if database_url.startswith("sqlite"):
        return dlt.destinations.sqlalchemy(credentials=database_url)
    # dlt insists on a password field; a trust-auth server ignores it.
    url = make_url(database_url)
    if url.password is None:
        url = url.set(password="unused")  # noqa: S106 - not a secret
    return dlt.destinations.postgres(credentials=url.render_as_string(hide_password=False))


def run(base_url: str, database_url: str, customers_csv: Path) -> dict[str, Any]:
    rows = list(csv.DictReader(io.StringIO(customers_csv.read_text(encoding="utf-8"))))
    customer_ids = [int(row["customer_id"]) for row in rows]

    @dlt.resource(selected=False)
    def customers() -> Any:
        yield [{"customer_id": value} for value in customer_ids]

    resources = rest_api_resources(
        {
            "client": {
                "base_url": base_url,
                "auth": TanmaSignatureAuth(app_id=APP_ID, app_key=APP_KEY),
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                customers,
                {
                    "name": "customer_files",
                    "endpoint": {
                        "path": "api/v3/customer/list-file-of-customer",
                        "method": "POST",
                        "json": {
                            "customerId": "{resources.customers.customer_id}",
                            "pageSize": PAGE_SIZE,
                        },
                        "paginator": LastIdPaginator(PAGE_SIZE),
                        "data_selector": "data.result",
                    },
                    "include_from_parent": ["customer_id"],
                },
            ],
        }
    )
    with tempfile.TemporaryDirectory(prefix="tanma_bench_dlt_") as scratch:
        pipeline = dlt.pipeline(
            pipeline_name="tanma_bench",
            pipelines_dir=scratch,
            destination=_destination(database_url),
            dataset_name="dlt_mirror",
        )
        started = time.perf_counter()
        pipeline.run(resources)
        seconds = time.perf_counter() - started
        trace = pipeline.last_trace
        normalized = trace.last_normalize_info if trace is not None else None
        counts = normalized.row_counts if normalized else {}
    return {"records": int(counts.get("customer_files", 0)), "seconds": seconds}


if __name__ == "__main__":
    result = run(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
    print(json.dumps(result))
