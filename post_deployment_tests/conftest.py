"""Shared configuration and helpers for the post-deployment suite.

The suite talks to an already running archive interface over HTTP.  It is configured only through
environment variables:

* ``ARCHIVE_URL``            base URL of the server, no trailing slash (default ``http://127.0.0.1:8080``)
* ``LARGE_FILE_SIZE``        size in bytes of the large-file test (default 1 GiB)
* ``MANY_FILES_TEST_COUNT``  number of files in the many-files test (default 1000)

Tests that need more (``PATCH_SOURCE_DIR``, the ``SWIFT_*`` users) fail with a message saying how to set
it up when it is missing; no test is ever skipped (``no_skips`` turns a skip into a failure).

Every test uses file ids derived from a random per-session base, so the suite can be run any number
of times against the same server without colliding with files left by earlier runs.
"""

import hashlib
import http.client
import itertools
import os
import random
import socket
import ssl
import struct
import threading
import urllib.parse

import pytest
import requests

from no_skips import pytest_runtest_makereport  # noqa: F401  (a hook: pytest finds it here)

ARCHIVE_URL = os.environ.get("ARCHIVE_URL", "http://127.0.0.1:8080").rstrip("/")
LARGE_FILE_SIZE = int(os.environ.get("LARGE_FILE_SIZE", str(1 << 30)))
MANY_FILES_TEST_COUNT = int(os.environ.get("MANY_FILES_TEST_COUNT", "1000"))

# Seconds before a request that gets no answer counts as a failure.
TIMEOUT = 60
# (connect, read) timeout for the large transfers: the server may need a while to make 1 GiB durable.
LARGE_TIMEOUT = (TIMEOUT, 1800)

TEXT_PAYLOAD = b"Writing content for first file"  # 30 bytes
BINARY_PAYLOAD = bytes([123, 3, 255, 0, 100])  # 5 bytes

_URL_PARTS = urllib.parse.urlsplit(ARCHIVE_URL)
# Per-session random base for file ids: a random 48-bit number times 1000 (so a run's consecutive ids
# stay clear of the next run's), far above the small fixed ids other tools use and below 2**63.
_ID_COUNTER = itertools.count(random.SystemRandom().randrange(1 << 40, 1 << 48) * 1000)
_ID_LOCK = threading.Lock()


def new_id():
    """A file id (decimal string) that no other test of any run has used."""
    with _ID_LOCK:
        return str(next(_ID_COUNTER))


def file_url(file_id):
    return "{}/{}".format(ARCHIVE_URL, file_id)


def json_body(resp):
    """Decode a JSON response body, failing with the raw text if it is not JSON."""
    try:
        return resp.json()
    except ValueError:
        pytest.fail("response {} is not JSON: {!r}".format(resp.status_code, resp.text[:2000]))


def put_bytes(file_id, data, headers=None):
    """PUT ``data`` (bytes) as file ``file_id``; returns the response."""
    return requests.put(file_url(file_id), data=data, headers=headers, timeout=TIMEOUT)


def put_ok(file_id, data, headers=None):
    """PUT ``data`` and assert it was accepted."""
    resp = put_bytes(file_id, data, headers=headers)
    assert resp.status_code == 201, "PUT {} -> {} {}".format(file_id, resp.status_code, resp.text[:2000])
    return resp


def raw_request(method, raw_path, body=None, headers=None, send_content_length=True):
    """Send one request with ``raw_path`` exactly as given (no client-side normalisation).

    ``raw_path`` is appended to the path of ARCHIVE_URL; it must start with ``/``.  Returns
    ``(status, headers, body_bytes)`` where headers is an ``http.client.HTTPMessage``.
    If ``send_content_length`` is false and there is no body, no Content-Length header is sent.
    """
    conn_cls = http.client.HTTPSConnection if _URL_PARTS.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(_URL_PARTS.hostname, _URL_PARTS.port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, _URL_PARTS.path + raw_path, skip_accept_encoding=True)
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        elif send_content_length and method in ("PUT", "POST", "PATCH"):
            headers.setdefault("Content-Length", "0")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


def raw_socket():
    """A socket connected to the server; over TLS when ARCHIVE_URL is https (certificate checked)."""
    https = _URL_PARTS.scheme == "https"
    port = _URL_PARTS.port or (443 if https else 80)
    sock = socket.create_connection((_URL_PARTS.hostname, port), timeout=TIMEOUT)
    if not https:
        return sock
    return ssl.create_default_context().wrap_socket(sock, server_hostname=_URL_PARTS.hostname)


def require_env(name, how):
    """The value of environment variable ``name``; fails the test, saying ``how`` to set it, if unset."""
    value = os.environ.get(name)
    if not value:
        pytest.fail("{} is not set: {}".format(name, how))
    return value


def raw_host_header():
    return _URL_PARTS.netloc


def raw_base_path():
    return _URL_PARTS.path


class PatternStream:
    """File-like object producing ``size`` bytes of deterministic, non-repeating data.

    requests/urllib3 see ``__len__`` and send a Content-Length, then pull the body with ``read()``,
    so memory stays bounded no matter how large ``size`` is.  The sha256 of everything handed out is
    kept in ``sha256``.  Each 1 MiB block is a random block rotated and stamped with its index, so a
    duplicated, dropped or reordered block changes the hash.
    """

    BLOCK = 1 << 20

    def __init__(self, size, seed=None):
        rng = random.Random(seed)
        self._base = rng.randbytes(self.BLOCK) if hasattr(rng, "randbytes") else os.urandom(self.BLOCK)
        self.size = size
        self._pos = 0
        self._block_index = 0
        self._pending = b""
        self._offset = 0
        self.sha256 = hashlib.sha256()

    def __len__(self):
        return self.size

    def _next_block(self):
        i = self._block_index
        self._block_index += 1
        shift = (i * 7919) % self.BLOCK
        rotated = self._base[shift:] + self._base[:shift]
        return struct.pack(">Q", i) + rotated[8:]

    def read(self, n=-1):
        remaining = self.size - self._pos
        if remaining <= 0:
            return b""
        if n is None or n < 0 or n > remaining:
            n = remaining
        parts = []
        want = n
        while want > 0:
            if self._offset >= len(self._pending):
                self._pending = self._next_block()
                self._offset = 0
            take = self._pending[self._offset:self._offset + want]
            self._offset += len(take)
            parts.append(take)
            want -= len(take)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos += len(data)
        self.sha256.update(data)
        return data


@pytest.fixture(scope="session", autouse=True)
def archive_is_up():
    """Fail fast (every test errors with one clear message) when nothing answers at ARCHIVE_URL."""
    try:
        resp = requests.get(ARCHIVE_URL + "/", timeout=TIMEOUT)
    except requests.RequestException as exc:
        pytest.fail("archive interface at {} is not reachable: {}".format(ARCHIVE_URL, exc))
    assert resp.status_code == 200, "GET {}/ -> {} {}".format(ARCHIVE_URL, resp.status_code, resp.text[:500])


@pytest.fixture
def file_id():
    """A fresh, unused file id for one test."""
    return new_id()
