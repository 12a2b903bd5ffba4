"""The suite itself: a test that cannot run fails with a message saying why, it is never skipped.

Each case runs pytest in a child process (same interpreter, same environment as this run) and reads
its outcome.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Seconds one child pytest run may take (it makes at most a few requests to the server).
CHILD_TIMEOUT = 300


def run_pytest(args, env):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + args,
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_skip_becomes_a_failure_with_its_reason(tmp_path):
    (tmp_path / "conftest.py").write_text("from no_skips import *  # noqa: F401,F403\n")
    (tmp_path / "test_cases.py").write_text(
        "import pytest\n"
        "\n"
        "def test_skipped_inside():\n"
        "    pytest.skip('needs THING: set THING to a thing')\n"
        "\n"
        "@pytest.mark.skipif(True, reason='marked: set OTHER')\n"
        "def test_marked():\n"
        "    pass\n"
        "\n"
        "def test_runs():\n"
        "    pass\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p))
    code, output = run_pytest(["--rootdir", str(tmp_path), str(tmp_path)], env)
    assert code == 1, output
    assert "needs THING: set THING to a thing" in output and "marked: set OTHER" in output, output
    assert "1 passed" in output and "skipped" not in output.splitlines()[-1], output


def test_patch_success_without_a_shared_directory_fails_saying_how_to_set_it_up():
    env = {k: v for k, v in os.environ.items() if k != "PATCH_SOURCE_DIR"}
    target = os.path.join(HERE, "test_improvements.py") + "::test_patch_moves_file_from_allowed_dir"
    code, output = run_pytest([target], env)
    assert code == 1, output
    assert "PATCH_SOURCE_DIR is not set" in output and "patch_source_dirs" in output, output
