"""``tanma-sync push register`` and ``push status``: the command-line side of the receiver."""

from __future__ import annotations

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.domain.errors import UsageError
from sync.domain.push import DOCUMENTED_TYPES
from sync.mirror.push_inbox import InboxStatus
from sync.mirror.store import MirrorStore

# What `push register` subscribes to unless --types says otherwise: every type that names a
# customer, and the confirmation.
DEFAULT_TYPES = DOCUMENTED_TYPES


def subscription(types: list[str] | None) -> str:
    """The comma-separated subscription; UsageError for an empty or malformed type."""
    chosen = [t.strip() for item in (types or list(DEFAULT_TYPES)) for t in item.split(",")]
    bad = [t for t in chosen if not t or not all(c.isalnum() or c == "_" for c in t)]
    if bad:
        raise UsageError(f"--types: {bad[0]!r} is not a push type (letters, digits and _)")
    if "register" not in chosen:
        chosen.insert(0, "register")  # the confirmation push is how the address is proven
    return ",".join(dict.fromkeys(chosen))


def check_address(address: str) -> str:
    if not address.startswith(("https://", "http://")):
        raise UsageError(f"URL {address!r} must start with https:// (or http:// behind a proxy)")
    return address


async def register(settings: Settings, address: str, types: str) -> list[str]:
    """Register the address with Tanmarket; the lines to show."""
    settings.require_credentials()
    async with TanmaClient(settings) as client:
        await client.register_push(address, types)
    lines = [f"registered {address} for: {types}"]
    if not address.startswith("https://"):
        lines.append("warning: the address is not https; pushes would cross the internet in clear")
    lines.append(
        "expect a `register` push within a minute: the daemon's log shows push_rejected if it "
        f"was refused, and `tanma-sync push status` counts it under register once received "
        f"(the daemon must be listening: SYNC_PUSH_LISTEN, path {settings.sync_push_path})"
    )
    return lines


async def status_lines(store: MirrorStore) -> list[str]:
    return describe(await store.push.status())


def describe(status: InboxStatus) -> list[str]:
    lines = [
        f"pushes received {status.received}, processed {status.processed}, "
        f"pending {status.pending}, followed by a sync {status.synced}"
    ]
    if status.by_type:
        types = ", ".join(f"{k} {v}" for k, v in sorted(status.by_type.items()))
        lines.append(f"by type: {types}")
    if status.by_outcome:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(status.by_outcome.items()))
        lines.append(f"by outcome: {outcomes}")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(status.rejected.items())) or "none"
    lines.append(f"rejected: {rejected}")
    p50, p99 = status.lag_at(0.5), status.lag_at(0.99)
    if p50 is not None and p99 is not None:
        lines.append(
            f"lag from receipt to the customer's sync (last {len(status.lags_s)}): "
            f"p50 {p50:.1f}s, p99 {p99:.1f}s, max {max(status.lags_s):.1f}s"
        )
    else:
        lines.append("lag from receipt to the customer's sync: no push followed by a sync yet")
    return lines
