"""Behaviour where this project deliberately differs from the reference implementation.

See the "Pacifica API decisions" table in DESIGN.md: 404 for missing files, an honoured and validated
PUT ``Last-Modified``, HTTP-friendly GET (Content-Length, ETag, ranges), chunked / form-encoded PUTs
and body-less POSTs accepted, atomic PUTs, no path traversal, restricted PATCH sources.  Also checks
the reference quirks that are kept on purpose (header spellings and formats, write-once 500).

Most of these tests fail against the reference implementation; that is expected.
"""

import json
import math
import os
import socket
import time
import urllib.parse

import pytest
import requests

from conftest import (
    ARCHIVE_URL,
    TEXT_PAYLOAD,
    TIMEOUT,
    file_url,
    json_body,
    new_id,
    put_bytes,
    put_ok,
    raw_base_path,
    raw_host_header,
    raw_request,
    raw_socket,
    require_env,
)

ERROR_KEYS = {"status", "message", "traceback", "version"}
# 1994-11-06 08:49:37 UTC, the example date of RFC 9110 in its three historical forms.
EXPECTED_MTIME = 784111777
NO_COMPRESSION = {"Accept-Encoding": "identity"}


def assert_error_body(resp_or_bytes, code):
    """The body is the reference's 4-key JSON error object, with ``status`` naming ``code``."""
    if isinstance(resp_or_bytes, (bytes, bytearray)):
        body = json.loads(resp_or_bytes.decode("utf-8"))
    else:
        body = json_body(resp_or_bytes)
    assert set(body) == ERROR_KEYS, "error body keys: {}".format(sorted(body))
    assert body["status"].startswith(str(code)), body["status"]
    return body


# --- missing files are 404, not 500 (except stage) ------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_missing_file_is_404_with_json_error(method, file_id):
    resp = requests.request(method, file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 404, resp.text[:2000]
    assert_error_body(resp, 404)


def test_missing_file_stage_is_500_as_cartd_expects(file_id):
    """pacifica-cartd treats only a 500 from POST as a failed stage."""
    resp = requests.post(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 500, resp.text[:2000]
    assert file_id in assert_error_body(resp, 500)["message"]


def test_missing_file_head_is_404_without_body(file_id):
    resp = requests.head(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 404
    assert resp.content == b""


def test_delete_then_get_is_404(file_id):
    put_ok(file_id, TEXT_PAYLOAD)
    resp = requests.delete(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text[:2000]
    resp = requests.get(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 404, resp.text[:2000]
    assert_error_body(resp, 404)
    assert requests.head(file_url(file_id), timeout=TIMEOUT).status_code == 404


# --- PUT Last-Modified is honoured ----------------------------------------------------------------

@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # RFC 1123
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime (what pacifica-ingest sends)
    ],
    ids=["rfc1123", "rfc850", "asctime"],
)
def test_put_last_modified_sets_mtime(value, file_id):
    put_ok(file_id, TEXT_PAYLOAD, headers={"Last-Modified": value})
    resp = requests.head(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 204
    # Kept from the reference: HEAD Last-Modified is a Unix float such as "784111777.0".
    assert math.floor(float(resp.headers["Last-Modified"])) == EXPECTED_MTIME, resp.headers["Last-Modified"]


def test_put_unparseable_last_modified_is_400_and_writes_nothing(file_id):
    resp = put_bytes(file_id, TEXT_PAYLOAD, headers={"Last-Modified": "garbage"})
    assert resp.status_code == 400, resp.text[:2000]
    assert_error_body(resp, 400)
    assert requests.head(file_url(file_id), timeout=TIMEOUT).status_code == 404


# --- GET: HTTP headers and ranges -----------------------------------------------------------------

def test_get_has_length_etag_and_accept_ranges(file_id):
    put_ok(file_id, b"xyz")
    resp = requests.get(file_url(file_id), headers=NO_COMPRESSION, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == b"xyz"
    assert resp.headers.get("Content-Length") == "3"
    assert resp.headers.get("ETag"), "no ETag header"
    assert resp.headers.get("Accept-Ranges") == "bytes"
    again = requests.get(file_url(file_id), headers=NO_COMPRESSION, timeout=TIMEOUT)
    assert again.headers.get("ETag") == resp.headers.get("ETag"), "ETag changed for an unchanged file"


def test_get_byte_range_end_is_exclusive(file_id):
    put_ok(file_id, b"xyz")
    resp = requests.get(file_url(file_id), params={"byte_range": "1-3"}, headers=NO_COMPRESSION, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == b"yz"
    if "Content-Length" in resp.headers:
        assert resp.headers["Content-Length"] == "2"


def test_get_byte_range_past_end_returns_whole_file(file_id):
    put_ok(file_id, b"xyz")
    resp = requests.get(file_url(file_id), params={"byte_range": "0-100"}, headers=NO_COMPRESSION, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == b"xyz"


def test_get_http_range_is_206(file_id):
    put_ok(file_id, b"xyz")
    headers = dict(NO_COMPRESSION, Range="bytes=1-1")
    resp = requests.get(file_url(file_id), headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 206, resp.text[:2000]
    assert resp.headers.get("Content-Range") == "bytes 1-1/3"
    assert resp.content == b"y"


def test_get_unsatisfiable_range_is_416(file_id):
    put_ok(file_id, b"xyz")
    headers = dict(NO_COMPRESSION, Range="bytes=10-")
    resp = requests.get(file_url(file_id), headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 416, resp.text[:2000]


def test_get_bad_byte_range_is_400_naming_the_value(file_id):
    put_ok(file_id, b"xyz")
    resp = requests.get(file_url(file_id), params={"byte_range": "blah"}, timeout=TIMEOUT)
    assert resp.status_code == 400, resp.text[:2000]
    body = assert_error_body(resp, 400)
    assert "blah" in body["message"], body["message"]


# --- write-once (kept from the reference, but independent of the server's user) -----------------

def test_rewrite_is_refused_and_keeps_content(file_id):
    put_ok(file_id, TEXT_PAYLOAD)
    resp = put_bytes(file_id, b"something else entirely")
    assert resp.status_code == 500, resp.text[:2000]
    assert "Can't open" in assert_error_body(resp, 500)["traceback"]
    resp = requests.get(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == TEXT_PAYLOAD


# --- uploads the reference rejects --------------------------------------------------------------

def test_chunked_put_is_accepted(file_id):
    pieces = [TEXT_PAYLOAD, bytes(range(256)) * 300, b"", b"tail"]
    expected = b"".join(pieces)

    def body():
        for piece in pieces:
            yield piece

    # A generator body makes requests use Transfer-Encoding: chunked without Content-Length.
    resp = requests.put(file_url(file_id), data=body(), timeout=TIMEOUT)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.request.headers
    assert resp.status_code == 201, resp.text[:2000]
    assert json_body(resp)["total_bytes"] == len(expected)
    got = requests.get(file_url(file_id), timeout=TIMEOUT)
    assert got.status_code == 200
    assert got.content == expected


def test_form_encoded_put_is_stored_raw(file_id):
    data = b"abc=def&ghi&x=%20y"
    resp = put_bytes(file_id, data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 201, resp.text[:2000]
    assert json_body(resp)["total_bytes"] == len(data)
    got = requests.get(file_url(file_id), timeout=TIMEOUT)
    assert got.status_code == 200
    assert got.content == data


def test_post_without_content_length_stages(file_id):
    put_ok(file_id, TEXT_PAYLOAD)
    status, _, body = raw_request("POST", "/" + file_id, send_content_length=False)
    assert status == 200, body[:2000]
    assert json.loads(body.decode("utf-8")) == {"message": "File was staged", "file": file_id}


def test_cut_off_upload_leaves_nothing(file_id):
    sock = raw_socket()
    try:
        head = (
            "PUT {}/{} HTTP/1.1\r\n"
            "Host: {}\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Length: 1000000\r\n"
            "\r\n"
        ).format(raw_base_path(), file_id, raw_host_header())
        sock.sendall(head.encode("ascii") + b"\x42" * 1000)
        # Signal end-of-stream, then give the server a bounded time to notice and answer/close.
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        sock.settimeout(1)
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
    finally:
        sock.close()
    resp = requests.head(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 404, "cut-off upload left a file behind (HEAD -> {})".format(resp.status_code)
    resp = put_bytes(file_id, TEXT_PAYLOAD)
    assert resp.status_code == 201, resp.text[:2000]
    assert requests.get(file_url(file_id), timeout=TIMEOUT).content == TEXT_PAYLOAD


# --- no path traversal ----------------------------------------------------------------------------

# ``{tag}`` is replaced by a fresh id, so reruns never meet files a broken server may have written.
# Writes use harmless targets: a broken server must not be able to clobber system files.
TRAVERSAL_CASES = [
    ("PUT", "/..%2Fescape-{tag}"),
    ("PUT", "/..%2F..%2Fescape-{tag}"),
    ("PUT", "/%2Ftmp%2Farchiveinterface-traversal-{tag}"),
    ("GET", "/..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/%2Fetc%2Fpasswd"),
    ("HEAD", "/..%2F..%2Fetc%2Fpasswd"),
    ("PUT", "/{tag}%00x"),
    ("GET", "/{tag}%00x"),
    ("GET", "/%00"),
]


@pytest.mark.parametrize(
    "method,raw_path",
    TRAVERSAL_CASES,
    ids=["{} {}".format(m, p.replace("{tag}", "N")) for m, p in TRAVERSAL_CASES],
)
def test_path_traversal_is_refused(method, raw_path):
    raw_path = raw_path.replace("{tag}", new_id())
    body = b"traversal attempt" if method == "PUT" else None
    status, _, data = raw_request(method, raw_path, body=body)
    assert status == 400, "{} {} -> {} {!r}".format(method, raw_path, status, data[:200])
    assert b"root:" not in data


# --- PATCH ----------------------------------------------------------------------------------------

def _server_is_local():
    host = urllib.parse.urlsplit(ARCHIVE_URL).hostname
    return host in ("127.0.0.1", "localhost", "::1")


def test_patch_outside_allowed_dirs_is_403(file_id):
    source = "/etc/hostname"
    existed = os.path.exists(source)
    resp = requests.patch(file_url(file_id), json={"path": source}, timeout=TIMEOUT)
    assert resp.status_code == 403, resp.text[:2000]
    assert_error_body(resp, 403)
    if _server_is_local() and existed:
        assert os.path.exists(source), "{} was moved away".format(source)
    assert requests.head(file_url(file_id), timeout=TIMEOUT).status_code == 404


def test_patch_non_json_is_415(file_id):
    resp = requests.patch(
        file_url(file_id),
        data=b'{"path": "/nonexistent"}',
        headers={"Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 415, resp.text[:2000]
    assert_error_body(resp, 415)


def test_patch_invalid_json_is_400(file_id):
    resp = requests.patch(
        file_url(file_id),
        data=b'{"path": ',
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 400, resp.text[:2000]
    assert_error_body(resp, 400)


def test_patch_moves_file_from_allowed_dir(file_id):
    source_dir = require_env(
        "PATCH_SOURCE_DIR",
        "set it to a directory this machine shares with the server and that the server lists in its "
        "patch_source_dirs (scripts/test.sh does)",
    )
    source = os.path.join(source_dir, "patch-source-" + file_id)
    with open(source, "wb") as handle:
        handle.write(TEXT_PAYLOAD)
    try:
        resp = requests.patch(file_url(file_id), json={"path": source}, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text[:2000]
        assert json_body(resp) == {"message": "File Moved Successfully"}
        assert not os.path.exists(source)
        got = requests.get(file_url(file_id), timeout=TIMEOUT)
        assert got.status_code == 200
        assert got.content == TEXT_PAYLOAD
    finally:
        if os.path.exists(source):
            os.unlink(source)


# --- other methods and kept headers ----------------------------------------------------------------

def test_other_method_is_405_with_allow(file_id):
    resp = requests.options(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 405
    allow = resp.headers.get("Allow", "")
    assert allow, "405 without an Allow header"
    methods = {m.strip() for m in allow.split(",")}
    assert {"GET", "PUT", "HEAD", "POST", "DELETE", "PATCH"} <= methods, allow


def test_head_keeps_reference_headers(file_id):
    put_ok(file_id, TEXT_PAYLOAD)
    resp = requests.head(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 204
    assert resp.headers.get("X-Pacifica-Messsage") == "File was found"
    # A disk backend answers one level, HPSS its five levels (both as the reference does).
    assert resp.headers.get("X-Pacifica-Bytes-Per-Level") in ("(30,)", "(30, 0, 0, 0, 0)")
    assert resp.headers.get("X-Pacifica-File-Storage-Media") == "disk"
    assert resp.headers.get("X-Content-Length") == "30"
    float(resp.headers["Last-Modified"])
    float(resp.headers["X-Pacifica-Ctime"])
