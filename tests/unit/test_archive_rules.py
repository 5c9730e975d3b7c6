"""The archive's pure rules: host policy, key layout, size-text tolerance, error pages, the
archive URL and the retry plan."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.archive import bodies, layout, sizes
from sync.archive.location import ArchiveUrlError, parse_archive_url
from sync.archive.outcomes import ArchiveFailure, Reason, next_try_delay
from sync.archive.policy import HostPatternError, HostPolicy
from sync.sim.content import human_size

# -- hosts ---------------------------------------------------------------------------------


def test_names_and_wildcards() -> None:
    policy = HostPolicy.parse("*.tanmarket.cn, files.example.com")
    assert policy.host_allowed("dev.tanmarket.cn")
    assert policy.host_allowed("A.B.TANMARKET.CN.")
    assert not policy.host_allowed("tanmarket.cn")  # the wildcard means subdomains
    assert not policy.host_allowed("eviltanmarket.cn")
    assert not policy.host_allowed("tanmarket.cn.evil.com")
    assert policy.host_allowed("files.example.com")
    assert not policy.host_allowed("x.files.example.com")


def test_addresses_and_networks() -> None:
    policy = HostPolicy.parse("127.0.0.1 10.1.0.0/16 [::1]")
    assert policy.host_allowed("127.0.0.1")
    assert policy.host_allowed("10.1.2.3")
    assert policy.host_allowed("[::1]")
    assert not policy.host_allowed("127.0.0.2")
    assert not policy.host_allowed("localhost")  # a name is not its address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_refused_unless_named(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not HostPolicy.parse("*.tanmarket.cn").address_allowed(ip)
    assert HostPolicy.parse(f"{address}/128" if ":" in address else address).address_allowed(ip)


def test_public_addresses_pass() -> None:
    policy = HostPolicy.parse("*.tanmarket.cn")
    assert policy.address_allowed(ipaddress.ip_address("8.8.8.8"))
    assert policy.address_allowed(ipaddress.ip_address("2001:4860:4860::8888"))


@pytest.mark.parametrize("bad", ["*", "*.", "a b/c", "exa_mple.com", "-x.com", "1.2.3.4/99"])
def test_bad_patterns_are_named(bad: str) -> None:
    with pytest.raises(HostPatternError, match="not a"):
        HostPolicy.parse(bad)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://dev.tanmarket.cn/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https:///nohost", "no host"),
        ("https://user:pw@dev.tanmarket.cn/x", "credentials"),
        ("https://evil.com/x", "not in SYNC_ARCHIVE_HOSTS"),
        ("https://dev.tanmarket.cn:99999/x", "not a valid URL"),
        ("http://[::1/x", "not a valid URL"),
    ],
)
def test_urls_refused_before_any_connection(url: str, why: str) -> None:
    reason = HostPolicy.parse("*.tanmarket.cn").check_url(url)
    assert reason is not None and why in reason


def test_allowed_url() -> None:
    policy = HostPolicy.parse("*.tanmarket.cn")
    assert policy.check_url("https://dev.tanmarket.cn/fdfsServer/group1/M00/a.pdf") is None


# -- layout --------------------------------------------------------------------------------


def test_content_key_layout() -> None:
    digest = "ab" + "0" * 62
    assert layout.content_key(digest) == f"sha256/ab/{digest}"
    with pytest.raises(ValueError):
        layout.content_key("AB" + "0" * 62)
    with pytest.raises(ValueError):
        layout.content_key("../" + "0" * 61)
    first, second = layout.temp_key(), layout.temp_key()
    assert first.startswith("tmp/") and first != second


# -- sizes ---------------------------------------------------------------------------------


def test_size_bounds() -> None:
    assert sizes.size_bounds("812B") == (812, 812)
    low, high = sizes.size_bounds("29.9KB") or (0, 0)
    assert low <= 29.85 * 1000 and high >= 29.95 * 1024
    assert sizes.size_bounds(None) is None
    assert sizes.size_bounds("big") is None
    assert not sizes.contradicts("about a page", 10)  # text that says nothing contradicts nothing


def test_error_page_contradicts_a_scan() -> None:
    assert sizes.contradicts("3.2MB", 512)
    assert sizes.contradicts("1.0KB", 2000)
    assert not sizes.contradicts("1.0KB", 1024)


@given(st.integers(min_value=0, max_value=5 * 1024**3))
def test_the_api_s_own_rounding_never_contradicts(size: int) -> None:
    assert not sizes.contradicts(human_size(size), size)


# -- bodies --------------------------------------------------------------------------------


def test_error_pages() -> None:
    assert bodies.is_error_page("text/html; charset=utf-8", b"%PDF", html_expected=False)
    assert bodies.is_error_page(None, b"\xef\xbb\xbf  <!DOCTYPE HTML><html>", html_expected=False)
    assert bodies.is_error_page("application/octet-stream", b"<html>", html_expected=False)
    assert not bodies.is_error_page("application/pdf", b"%PDF-1.7", html_expected=False)
    assert not bodies.is_error_page("text/html", b"<html>", html_expected=True)
    assert bodies.expects_html("HTML", None)
    assert bodies.expects_html(None, "https://h/x/page.htm?x=1")
    assert not bodies.expects_html("pdf", "https://h/x.pdf")


# -- the archive URL -----------------------------------------------------------------------


def test_archive_urls() -> None:
    assert parse_archive_url("file:///srv/archive/").root == "/srv/archive"
    s3 = parse_archive_url("s3://bucket/tanma/files/")
    assert (s3.scheme, s3.root, s3.prefix) == ("s3", "bucket", "tanma/files")
    assert parse_archive_url("s3://bucket").prefix == ""
    assert s3.describe() == "s3://bucket/tanma/files"


@pytest.mark.parametrize(
    "bad",
    ["file://relative/x", "file:///a/../b", "s3://", "s3://key@bucket/x", "https://x/y", "/x"],
)
def test_bad_archive_urls(bad: str) -> None:
    with pytest.raises(ArchiveUrlError):
        parse_archive_url(bad)


# -- outcomes ------------------------------------------------------------------------------


def test_which_failures_are_retried_in_place() -> None:
    assert ArchiveFailure(Reason.TIMEOUT, "x").transient
    assert ArchiveFailure(Reason.HTTP_ERROR, "x", status=503).transient
    assert ArchiveFailure(Reason.HTTP_ERROR, "x", status=429).transient
    assert not ArchiveFailure(Reason.HTTP_ERROR, "x", status=403).transient
    assert not ArchiveFailure(Reason.NOT_FOUND, "x", status=404).transient
    assert not ArchiveFailure(Reason.REFUSED_HOST, "x").transient
    assert not ArchiveFailure(Reason.TOO_LARGE, "x").transient


def test_next_try_doubles_up_to_the_cap() -> None:
    assert next_try_delay(1, 600, 86_400) == 600
    assert next_try_delay(2, 600, 86_400) == 1200
    assert next_try_delay(10, 600, 86_400) == 86_400
    assert next_try_delay(10_000, 600, 86_400) == 86_400
    assert next_try_delay(0, 600, 86_400) == 0
