"""A pytest plugin that turns every skipped test into a failure.

The suite is a check of a deployment: a test that cannot run (a variable not set, a server address
it cannot reach the way it needs) must say so loudly, with the reason and how to set it up, instead
of disappearing into a "skipped" count.  ``conftest.py`` loads this plugin for the whole suite.
"""

import pytest

__all__ = ["pytest_runtest_makereport"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = "this suite never skips a test; it could not run: {}".format(reason)
    return report
