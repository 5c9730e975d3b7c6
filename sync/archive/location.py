"""``SYNC_ARCHIVE_URL``: which store the archive writes to (pure).

``file:///absolute/dir`` is a directory on this machine; ``s3://bucket/prefix`` is a bucket on
any S3-compatible service (AWS, MinIO, SeaweedFS, Ceph, OSS, COS), with the endpoint, region
and keys from their own settings. Empty or ``off`` leaves the archive off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit


class ArchiveUrlError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ArchiveLocation:
    scheme: str  # "file" or "s3"
    root: str  # the directory, or the bucket
    prefix: str  # inside the bucket, no leading or trailing slash ("" for the bucket's root)

    def describe(self) -> str:
        if self.scheme == "file":
            return f"file://{self.root}"
        return f"s3://{self.root}/{self.prefix}".rstrip("/")


def parse_archive_url(text: str) -> ArchiveLocation:
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArchiveUrlError("a file URL names no host: write file:///absolute/dir")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ArchiveUrlError("the directory must be absolute: write file:///absolute/dir")
        normal = str(PurePosixPath(path))
        if ".." in PurePosixPath(path).parts:
            raise ArchiveUrlError("the directory may not contain '..'")
        return ArchiveLocation("file", normal, "")
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket or "@" in bucket or ":" in bucket:
            raise ArchiveUrlError("write s3://bucket/prefix (the endpoint is its own setting)")
        prefix = unquote(parts.path).strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ArchiveUrlError("the prefix may not contain empty, '.' or '..' parts")
        return ArchiveLocation("s3", bucket, prefix)
    raise ArchiveUrlError("must start with file:/// or s3://")
