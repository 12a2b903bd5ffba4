"""The cases of the reference implementation's deployment test, re-stated for this suite.

Behaviour checked here is shared by the reference (pacifica-archiveinterface) and this project:
write, status (HEAD), stage (POST), read (GET), delete and the write-once rewrite refusal, for a short
text file, a short binary file, one large binary file and many small files written and read in parallel.
Unlike the reference test, ids are unique per run, so the suite also passes on a non-empty archive.
"""

import concurrent.futures
import hashlib
import json

import pytest
import requests

from conftest import (
    BINARY_PAYLOAD,
    LARGE_FILE_SIZE,
    LARGE_TIMEOUT,
    MANY_FILES_TEST_COUNT,
    TEXT_PAYLOAD,
    TIMEOUT,
    PatternStream,
    file_url,
    json_body,
    new_id,
    put_bytes,
    put_ok,
)


def check_write(file_id, payload):
    resp = put_bytes(file_id, payload)
    assert resp.status_code == 201, resp.text[:2000]
    body = json_body(resp)
    assert body["message"] == "File added to archive"
    assert int(body["total_bytes"]) == len(payload)


def check_status(file_id, payload):
    put_ok(file_id, payload)
    resp = requests.head(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 204
    assert resp.headers["x-pacifica-messsage"] == "File was found"
    assert resp.headers["x-content-length"] == str(len(payload))
    assert resp.headers["x-pacifica-file-storage-media"] == "disk"


def check_stage(file_id, payload):
    put_ok(file_id, payload)
    resp = requests.post(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text[:2000]
    assert json_body(resp)["message"] == "File was staged"


def check_read(file_id, payload):
    put_ok(file_id, payload)
    with requests.get(file_url(file_id), stream=True, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200
        data = b"".join(resp.iter_content(chunk_size=1 << 16))
    assert data == payload


def check_delete(file_id, payload):
    put_ok(file_id, payload)
    resp = requests.delete(file_url(file_id), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text[:2000]


def check_rewrite(file_id, payload):
    put_ok(file_id, payload)
    resp = put_bytes(file_id, payload)
    assert resp.status_code == 500, "rewrite of {} was accepted: {}".format(file_id, resp.status_code)
    assert "Can't open" in json_body(resp)["traceback"]


class TestTextFile:
    """The 30-byte text payload."""

    def test_simple_write(self, file_id):
        check_write(file_id, TEXT_PAYLOAD)

    def test_simple_status(self, file_id):
        check_status(file_id, TEXT_PAYLOAD)

    def test_simple_stage(self, file_id):
        check_stage(file_id, TEXT_PAYLOAD)

    def test_simple_read(self, file_id):
        check_read(file_id, TEXT_PAYLOAD)

    def test_simple_delete(self, file_id):
        check_delete(file_id, TEXT_PAYLOAD)

    def test_file_rewrite(self, file_id):
        check_rewrite(file_id, TEXT_PAYLOAD)


class TestBinaryFile:
    """The 5-byte binary payload (contains 0x00 and 0xff)."""

    def test_binary_file_write(self, file_id):
        check_write(file_id, BINARY_PAYLOAD)

    def test_binary_file_status(self, file_id):
        check_status(file_id, BINARY_PAYLOAD)

    def test_binary_file_stage(self, file_id):
        check_stage(file_id, BINARY_PAYLOAD)

    def test_binary_file_read(self, file_id):
        check_read(file_id, BINARY_PAYLOAD)

    def test_binary_file_delete(self, file_id):
        check_delete(file_id, BINARY_PAYLOAD)

    def test_binary_file_rewrite(self, file_id):
        check_rewrite(file_id, BINARY_PAYLOAD)


def json_body_text(text):
    try:
        return json.loads(text)
    except ValueError:
        pytest.fail("response is not JSON: {!r}".format(text[:2000]))


class _LargeUpload:
    """Outcome of the one large PUT shared by the large-file tests."""

    def __init__(self, file_id, status_code, text, sha256):
        self.file_id = file_id
        self.status_code = status_code
        self.text = text
        self.sha256 = sha256

    def require_written(self):
        assert self.status_code == 201, "large PUT {} -> {} {}".format(
            self.file_id, self.status_code, self.text[:2000]
        )


@pytest.fixture(scope="class")
def large_upload():
    """PUT one LARGE_FILE_SIZE file, streamed with a Content-Length; never fails by itself.

    The tests of the class assert on the recorded outcome, so a failed upload shows up as test
    failures (not fixture errors), and the large file is sent only once.
    """
    file_id = new_id()
    stream = PatternStream(LARGE_FILE_SIZE, seed=int(file_id))
    try:
        resp = requests.put(file_url(file_id), data=stream, timeout=LARGE_TIMEOUT)
    except requests.RequestException as exc:
        return _LargeUpload(file_id, None, "request failed: {}".format(exc), None)
    return _LargeUpload(file_id, resp.status_code, resp.text, stream.sha256.hexdigest())


class TestLargeBinaryFile:
    """One file of LARGE_FILE_SIZE random-looking bytes, streamed both ways."""

    def test_large_file_write(self, large_upload):
        large_upload.require_written()
        body = json_body_text(large_upload.text)
        assert body["message"] == "File added to archive"
        assert int(body["total_bytes"]) == LARGE_FILE_SIZE

    def test_large_file_status(self, large_upload):
        large_upload.require_written()
        resp = requests.head(file_url(large_upload.file_id), timeout=TIMEOUT)
        assert resp.status_code == 204
        assert resp.headers["x-pacifica-messsage"] == "File was found"
        assert resp.headers["x-content-length"] == str(LARGE_FILE_SIZE)
        assert resp.headers["x-pacifica-file-storage-media"] == "disk"

    def test_large_file_stage(self, large_upload):
        large_upload.require_written()
        resp = requests.post(file_url(large_upload.file_id), timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text[:2000]
        assert json_body(resp)["message"] == "File was staged"

    def test_large_file_read(self, large_upload):
        large_upload.require_written()
        digest = hashlib.sha256()
        count = 0
        with requests.get(file_url(large_upload.file_id), stream=True, timeout=LARGE_TIMEOUT) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_content(chunk_size=1 << 20):
                count += len(chunk)
                digest.update(chunk)
        assert count == LARGE_FILE_SIZE
        assert digest.hexdigest() == large_upload.sha256, "content read back differs from what was written"


def _write_one(file_id):
    # A new connection per request, like the reference test: a server that closes idle keep-alive
    # connections (uWSGI --http-socket does) must not make a pooled connection fail.
    resp = put_bytes(file_id, TEXT_PAYLOAD)
    if resp.status_code != 201:
        return "PUT {} -> {} {}".format(file_id, resp.status_code, resp.text[:500])
    if resp.json().get("message") != "File added to archive":
        return "PUT {} -> unexpected body {}".format(file_id, resp.text[:500])
    return None


def _read_one(file_id):
    resp = requests.get(file_url(file_id), timeout=TIMEOUT)
    if resp.status_code != 200:
        return "GET {} -> {} {}".format(file_id, resp.status_code, resp.text[:500])
    if resp.content != TEXT_PAYLOAD:
        return "GET {} -> wrong content {!r}".format(file_id, resp.content[:100])
    return None


def _run_parallel(func, ids):
    """Run ``func`` over ``ids`` in 8 threads; return the list of failure descriptions.

    Each request has its own timeout and exceptions are collected, so a broken server makes this
    fail rather than hang.
    """
    failures = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    try:
        futures = {pool.submit(func, i): i for i in ids}
        for future in concurrent.futures.as_completed(futures, timeout=TIMEOUT * (1 + len(ids) // 8)):
            try:
                problem = future.result()
            except Exception as exc:  # noqa: BLE001 - any error in a worker is a test failure
                problem = "{} {}: {!r}".format(func.__name__, futures[future], exc)
            if problem:
                failures.append(problem)
    finally:
        # On a timeout, drop the queued work instead of waiting for it.
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


class TestManyFiles:
    def test_many_file_write(self):
        ids = [new_id() for _ in range(MANY_FILES_TEST_COUNT)]
        failures = _run_parallel(_write_one, ids)
        assert not failures, "{} of {} writes failed, first: {}".format(len(failures), len(ids), failures[:5])
        failures = _run_parallel(_read_one, ids)
        assert not failures, "{} of {} reads failed, first: {}".format(len(failures), len(ids), failures[:5])
