"""Telling a file from an HTTP error page dressed as one (pure).

A file server, proxy or login wall that answers 200 with an HTML page must not have that page
archived as the customer's file. A body is taken for such a page when its type says HTML or its
first bytes do, unless the record itself is an HTML file.
"""

from __future__ import annotations

HTML_FILE_TYPES = frozenset({"html", "htm", "xhtml", "mhtml", "shtml"})
SNIFF_BYTES = 512
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title")


def expects_html(file_type: str | None, url: str | None) -> bool:
    kind = (file_type or "").strip().lower().lstrip(".")
    if kind in HTML_FILE_TYPES:
        return True
    path = (url or "").split("?", 1)[0].split("#", 1)[0].lower()
    return any(path.endswith("." + t) for t in HTML_FILE_TYPES)


def is_error_page(content_type: str | None, head: bytes, *, html_expected: bool) -> bool:
    """Whether a body whose first bytes are ``head`` is an HTML page where a file was due."""
    if html_expected:
        return False
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml"):
        return True
    start = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return start.startswith(_HTML_STARTS)
