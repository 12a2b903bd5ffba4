"""The Swift v1 API and tempauth driven by python-swiftclient: the ``swift`` command line and the
``swiftclient.client`` API against a started server.

Configured through environment variables (the tests FAIL when they are missing, they never skip):

* ``SWIFT_AUTH_URL``                       e.g. ``http://127.0.0.1:8080/auth/v1.0``
* ``SWIFT_USER`` / ``SWIFT_KEY``           a tempauth user, e.g. ``test:tester`` / ``testing``
* ``SWIFT_OTHER_USER`` / ``SWIFT_OTHER_KEY`` a user of *another* account, e.g. ``other:tester2``

The server needs both users in its configuration, for example::

    [[swift.users]]
    account = "test"
    user = "tester"
    key = "testing"

    [[swift.users]]
    account = "other"
    user = "tester2"
    key = "testing2"

Every test works in containers with a random name and removes them afterwards.
"""

import hashlib
import os
import subprocess
import sys
import uuid

import pytest

try:
    from swiftclient import client as swift_api
    from swiftclient.exceptions import ClientException
except ImportError as exc:  # pragma: no cover - the requirements install it
    raise ImportError(
        "python-swiftclient is missing: pip install -r post_deployment_tests/requirements.txt"
    ) from exc

ENV_NAMES = ("SWIFT_AUTH_URL", "SWIFT_USER", "SWIFT_KEY", "SWIFT_OTHER_USER", "SWIFT_OTHER_KEY")
TIMEOUT = 120


@pytest.fixture(scope="module")
def env():
    """The Swift settings; fails (does not skip) with instructions when any is missing."""
    missing = [name for name in ENV_NAMES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            "the Swift tests need {} set. Start the server with two [[swift.users]] of different "
            "accounts in its config (e.g. test:tester/testing and other:tester2/testing2) and export "
            "SWIFT_AUTH_URL=http://<host:port>/auth/v1.0 SWIFT_USER=test:tester SWIFT_KEY=testing "
            "SWIFT_OTHER_USER=other:tester2 SWIFT_OTHER_KEY=testing2 (scripts/test.sh does all "
            "this).".format(", ".join(missing))
        )
    return {name: os.environ[name] for name in ENV_NAMES}


def swift(env, *args, user=None, key=None, check=True, input=None, cwd=None):
    """Runs the ``swift`` command line (``python -m swiftclient.shell``) and returns the process."""
    command = [
        sys.executable, "-m", "swiftclient.shell",
        "-A", env["SWIFT_AUTH_URL"],
        "-U", user or env["SWIFT_USER"],
        "-K", key or env["SWIFT_KEY"],
    ] + list(args)
    child_env = dict(os.environ, PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8")
    for name in ("ST_AUTH", "ST_USER", "ST_KEY", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"):
        child_env.pop(name, None)
    proc = subprocess.run(
        command, input=input, cwd=cwd, env=child_env, capture_output=True, timeout=TIMEOUT,
    )
    if check:
        assert proc.returncode == 0, "swift {} exited {}:\nstdout: {}\nstderr: {}".format(
            " ".join(args), proc.returncode,
            proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"),
        )
    return proc


def out(proc):
    return proc.stdout.decode("utf-8")


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def container(env):
    """A fresh container name; the container and everything in it is deleted afterwards."""
    name = "swifttest-" + uuid.uuid4().hex[:12]
    yield name
    swift(env, "delete", name, check=False)


@pytest.fixture
def conn(env):
    """A swiftclient Connection for SWIFT_USER."""
    c = swift_api.Connection(
        authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"], key=env["SWIFT_KEY"],
        retries=1, timeout=TIMEOUT,
    )
    yield c
    c.close()


def test_stat_account(env):
    text = out(swift(env, "stat"))
    assert "Account: AUTH_" in text, text
    assert "Containers:" in text and "Objects:" in text and "Bytes:" in text, text


def test_file_upload_list_stat_download_post_delete(env, container, tmp_path):
    data = b"hello from python-swiftclient\n" * 100
    source = tmp_path / "source.txt"
    source.write_bytes(data)
    name = "dir/with space/ünïcødé ☃.txt"
    swift(env, "upload", container, str(source), "--object-name", name)

    assert out(swift(env, "list", container)).splitlines() == [name]
    assert container in out(swift(env, "list")).splitlines()

    stat = out(swift(env, "stat", container, name))
    assert "ETag: " + md5(data) in stat, stat
    assert "Content Length: {}".format(len(data)) in stat, stat
    assert "Content Type: text/plain" in stat, stat
    assert "Meta Mtime:" in stat, stat

    container_stat = out(swift(env, "stat", container))
    assert "Objects: 1" in container_stat and "Bytes: {}".format(len(data)) in container_stat, container_stat

    # Download to stdout, and to a file (the md5 and the length are checked by the client too).
    assert swift(env, "download", container, name, "-o", "-").stdout == data
    target = tmp_path / "downloaded.txt"
    swift(env, "download", container, name, "-o", str(target))
    assert target.read_bytes() == data

    swift(env, "post", "-m", "color:blue", "-m", "Shape:round", container, name)
    stat = out(swift(env, "stat", container, name))
    assert "Meta Color: blue" in stat and "Meta Shape: round" in stat, stat
    assert "Meta Mtime:" not in stat, "POST replaces all user metadata: " + stat

    swift(env, "delete", container, name)
    assert out(swift(env, "list", container)) == ""
    missing = swift(env, "stat", container, name, check=False)
    assert missing.returncode != 0
    assert b"404" in missing.stderr or b"Not Found" in missing.stderr, missing.stderr


def test_directory_upload_listing_and_container_download(env, container, tmp_path):
    tree = tmp_path / "tree"
    files = {
        "a.txt": b"A" * 10,
        "sub dir/b.bin": os.urandom(70000),
        "sub dir/ünï/c.txt": b"c",
        "sub dir/ünï/d e.txt": b"d e",
        "z.txt": b"",
    }
    for rel, data in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    swift(env, "upload", container, "tree", cwd=str(tmp_path))

    names = out(swift(env, "list", container)).splitlines()
    assert names == sorted("tree/" + rel for rel in files), names

    listed = out(swift(env, "list", container, "--prefix", "tree/sub dir/", "--delimiter", "/"))
    assert listed.splitlines() == ["tree/sub dir/b.bin", "tree/sub dir/ünï/"], listed
    top = out(swift(env, "list", container, "--delimiter", "/")).splitlines()
    assert top == ["tree/"], top

    long = out(swift(env, "list", container, "--long", "--prefix", "tree/sub dir/b"))
    line = long.splitlines()[0]
    assert "70000" in line and line.endswith("tree/sub dir/b.bin"), long

    target = tmp_path / "download"
    swift(env, "download", container, "-D", str(target))
    for rel, data in files.items():
        assert (target / "tree" / rel).read_bytes() == data, rel

    swift(env, "delete", container)
    gone = swift(env, "stat", container, check=False)
    assert gone.returncode != 0, out(gone)
    assert container not in out(swift(env, "list")).splitlines()


def test_stdin_upload_is_chunked_and_works(env, container):
    data = os.urandom(300000)
    swift(env, "upload", container, "-", "--object-name", "from-stdin.bin", input=data)
    assert swift(env, "download", container, "from-stdin.bin", "-o", "-").stdout == data


def test_server_side_copy(env, container, tmp_path):
    data = os.urandom(50000)
    source = tmp_path / "orig.bin"
    source.write_bytes(data)
    swift(env, "upload", container, str(source), "--object-name", "orig.bin")
    swift(env, "copy", container, "orig.bin", "--destination", "/{}/copy dir/copied.bin".format(container),
          "-m", "copied:yes")
    assert swift(env, "download", container, "copy dir/copied.bin", "-o", "-").stdout == data
    stat = out(swift(env, "stat", container, "copy dir/copied.bin"))
    assert "ETag: " + md5(data) in stat and "Meta Copied: yes" in stat, stat


def test_segmented_upload(env, container, tmp_path):
    data = os.urandom(350000)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    swift(env, "upload", "-S", "100000", container, str(source), "--object-name", "big.bin")
    try:
        assert out(swift(env, "list", container)).splitlines() == ["big.bin"]
        assert len(out(swift(env, "list", container + "_segments")).splitlines()) == 4
        stat = out(swift(env, "stat", container, "big.bin"))
        assert "Content Length: 350000" in stat and "Manifest: " in stat, stat
        assert swift(env, "download", container, "big.bin", "-o", "-").stdout == data
        # Deleting the manifest deletes its segments too (the client finds them from the manifest).
        swift(env, "delete", container, "big.bin")
        assert out(swift(env, "list", container + "_segments")) == ""
    finally:
        swift(env, "delete", container + "_segments", check=False)


def test_client_api(env, conn, container):
    conn.put_container(container, headers={"X-Container-Meta-Project": "tape"})
    headers = conn.head_container(container)
    assert headers["x-container-object-count"] == "0"
    assert headers["x-container-meta-project"] == "tape"

    data = b"0123456789" * 1000
    etag = conn.put_object(
        container, "a/b/c.dat", data, content_type="application/x-test",
        headers={"X-Object-Meta-Origin": "api"}, etag=md5(data),
    )
    assert etag == md5(data)
    # A wrong ETag is refused with 422 and stores nothing.
    with pytest.raises(ClientException) as err:
        conn.put_object(container, "bad.dat", data, etag="0" * 32)
    assert err.value.http_status == 422
    with pytest.raises(ClientException) as err:
        conn.head_object(container, "bad.dat")
    assert err.value.http_status == 404

    headers, body = conn.get_object(container, "a/b/c.dat")
    assert body == data
    assert headers["etag"].strip('"') == md5(data)
    assert headers["content-type"] == "application/x-test"
    assert headers["x-object-meta-origin"] == "api"
    assert "x-trans-id" in headers and "x-timestamp" in headers

    headers, body = conn.get_object(container, "a/b/c.dat", headers={"Range": "bytes=10-19"})
    assert body == data[10:20]
    assert headers["content-range"] == "bytes 10-19/10000"

    conn.post_object(container, "a/b/c.dat", headers={"X-Object-Meta-Checked": "yes"})
    headers = conn.head_object(container, "a/b/c.dat")
    assert headers["x-object-meta-checked"] == "yes" and "x-object-meta-origin" not in headers

    conn.put_object(container, "a/x", b"x")
    _, listing = conn.get_container(container, prefix="a/", delimiter="/")
    assert [e.get("name", e.get("subdir")) for e in listing] == ["a/b/", "a/x"]
    _, listing = conn.get_container(container, marker="a/b/c.dat")
    assert [e["name"] for e in listing] == ["a/x"]
    entry = conn.get_container(container, prefix="a/b/")[1][0]
    assert entry["bytes"] == len(data) and entry["hash"] == md5(data)
    assert entry["content_type"] == "application/x-test" and entry["last_modified"]

    # An object name that is also a "directory" of another name conflicts on disk: 409.
    with pytest.raises(ClientException) as err:
        conn.put_object(container, "a/x/y", b"y")
    assert err.value.http_status == 409

    # A non-empty container cannot be deleted.
    with pytest.raises(ClientException) as err:
        conn.delete_container(container)
    assert err.value.http_status == 409
    for name in ("a/b/c.dat", "a/x"):
        conn.delete_object(container, name)
    with pytest.raises(ClientException) as err:
        conn.delete_object(container, "a/x")
    assert err.value.http_status == 404
    conn.delete_container(container)

    headers, containers = conn.get_account()
    assert "x-account-container-count" in headers
    assert container not in [c["name"] for c in containers]


def test_bad_key_and_bad_token_get_401(env):
    with pytest.raises(ClientException) as err:
        swift_api.get_auth(env["SWIFT_AUTH_URL"], env["SWIFT_USER"], "not-the-key")
    assert err.value.http_status == 401
    url, token = swift_api.get_auth(env["SWIFT_AUTH_URL"], env["SWIFT_USER"], env["SWIFT_KEY"])
    assert token and url.rstrip("/").split("/")[-1].startswith("AUTH_")
    with pytest.raises(ClientException) as err:
        swift_api.head_account(url, "AUTH_tk" + "0" * 40)
    assert err.value.http_status == 401
    with pytest.raises(ClientException) as err:
        swift_api.head_account(url, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert err.value.http_status == 401
    failed = swift(env, "stat", key="not-the-key", check=False)
    assert failed.returncode != 0
    assert b"401" in failed.stderr or b"Unauthorized" in failed.stderr, failed.stderr


def test_another_accounts_container_is_403(env, conn, container):
    conn.put_container(container)
    conn.put_object(container, "secret.txt", b"mine")
    url = conn.get_auth()[0]
    _, other_token = swift_api.get_auth(
        env["SWIFT_AUTH_URL"], env["SWIFT_OTHER_USER"], env["SWIFT_OTHER_KEY"]
    )
    for call in (
        lambda: swift_api.head_container(url, other_token, container),
        lambda: swift_api.get_container(url, other_token, container),
        lambda: swift_api.get_object(url, other_token, container, "secret.txt"),
        lambda: swift_api.put_object(url, other_token, container, "planted.txt", b"x"),
        lambda: swift_api.delete_object(url, other_token, container, "secret.txt"),
    ):
        with pytest.raises(ClientException) as err:
            call()
        assert err.value.http_status == 403
    # The other user's own account is separate: our container is not in it.
    other_url, _ = swift_api.get_auth(
        env["SWIFT_AUTH_URL"], env["SWIFT_OTHER_USER"], env["SWIFT_OTHER_KEY"]
    )
    assert other_url != url
    _, containers = swift_api.get_account(other_url, other_token)
    assert container not in [c["name"] for c in containers]
    conn.delete_object(container, "secret.txt")
