"""Image and video references as peers write them -> files inside the dataset root (via Staging).

Why: a reference may be a relative or absolute path, a ``file://`` URL, a ``data:`` URI,
embedded bytes, or an ``http(s)://`` URL. Training never touches the network (no
downloads at train time, and a URL read as a path fails late with a confusing "not
found"), so a URL is refused at conversion with one line, unless the user asks
``data convert --fetch-urls``: then each URL is fetched once and stored in the dataset
like embedded bytes (content-named, so repeats share a file).

Videos follow the same rules (paths, ``file://``, ``data:video/...;base64``, fetched URLs),
except raw embedded bytes: without a container name the file's type is unknown, so they
are refused; give a path.

Example:
    >>> local_path("file:///data/img%201.png")
    '/data/img 1.png'
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from vlmtune.errors import DataError

REMOTE = ("http", "https")
FETCH_TIMEOUT_S = 30
MAX_FETCH_BYTES = 64 * 2**20
# Function-level imports: urllib.request only when --fetch-urls asks for the network.


def local_path(ref: str) -> str:
    """``file://`` URL -> the path it names; any other string is returned as it is."""
    if ref.startswith("file://"):
        return unquote(urlparse(ref).path)
    return ref


def _fetch(url: str, *, file, line: int, field: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (user asked)
            data = response.read(MAX_FETCH_BYTES + 1)
    except Exception as err:  # urllib raises URLError, HTTPError, TimeoutError, ValueError...
        raise DataError(f"cannot fetch {url}: {err}", file=file, line=line, field=field) from None
    if len(data) > MAX_FETCH_BYTES:
        raise DataError(f"{url} is larger than {MAX_FETCH_BYTES >> 20} MiB", file=file, line=line,
                        field=field)
    return data


def _data_uri(ref: str, *, file, line: int, field: str) -> bytes:
    header, _, payload = ref.partition(",")
    if not header.endswith(";base64"):
        raise DataError("only base64 data: URIs are supported", file=file, line=line, field=field)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DataError("data: URI is not valid base64", file=file, line=line, field=field) from None


def store_image(ref: Any, staging, *, file, line: int, field: str, fetch_urls: bool = False) -> str:
    """Place the image ``ref`` names in the dataset; returns its path relative to the root."""
    return store_media(ref, staging, kind="image", file=file, line=line, field=field, fetch_urls=fetch_urls)


def _video_suffix(ref: str) -> str:
    """A stored video's file suffix, from a data: URI's type or a URL's path (PyAV probes
    content anyway; the suffix only keeps the dataset readable by people and other tools)."""
    if ref.startswith("data:"):
        mime = ref[5:].partition(";")[0].partition(",")[0]
        return mimetypes.guess_extension(mime) or ".video"
    return PurePosixPath(urlparse(ref).path).suffix or ".video"


def _stored_bytes(data: bytes, kind: str, ref: str, staging, *, file, line: int, field: str) -> str:
    if kind == "image":
        return staging.image_bytes(data, file=file, line=line, field=field)
    return staging.media_bytes(data, _video_suffix(ref))


def store_media(ref: Any, staging, *, kind: str, file, line: int, field: str,
                fetch_urls: bool = False) -> str:
    """Place the image or video (``kind``) ``ref`` names in the dataset; returns its path
    relative to the root."""
    if isinstance(ref, dict):  # datasets.Image storage {"bytes", "path"}
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, (bytes, bytearray)):
        if kind != "image":
            raise DataError(f"embedded {kind} bytes are not supported (their container is unknown); "
                            f"give the {kind} as a file path", file=file, line=line, field=field)
        return staging.image_bytes(bytes(ref), file=file, line=line, field=field)
    if not isinstance(ref, str):
        raise DataError(f"expected an {kind} path, URL or bytes, got {type(ref).__name__}",
                        file=file, line=line, field=field)
    if ref.startswith("data:"):
        return _stored_bytes(_data_uri(ref, file=file, line=line, field=field), kind, ref, staging,
                             file=file, line=line, field=field)
    scheme = urlparse(ref).scheme.lower()
    if scheme in REMOTE:
        if not fetch_urls:
            raise DataError(f"{kind} URL {ref} is not downloaded (training reads local files only); "
                            "pass --fetch-urls to store it in the dataset now",
                            file=file, line=line, field=field)
        return _stored_bytes(_fetch(ref, file=file, line=line, field=field), kind, ref, staging,
                             file=file, line=line, field=field)
    if scheme not in ("", "file") and len(scheme) > 1:  # "C:" drive letters are paths
        raise DataError(f"unsupported {kind} URL scheme {scheme!r} in {ref}", file=file, line=line,
                        field=field)
    return staging.image_path(local_path(ref), file=file, line=line, field=field, what=kind)
