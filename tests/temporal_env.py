"""Temporal servers for tests: the shared helpers of devtools, under the names tests import.

See :mod:`devtools.temporal` (servers from the pip-installed binaries, never a download) and
:mod:`devtools.processes` (a dev server as a child process that a test can kill and restart).
"""

from devtools.processes import DevServerProcess, free_port, wait_for_port
from devtools.temporal import (
    SEARCH_ATTRIBUTE_KEYS,
    start_dev_server,
    start_time_skipping,
    temporal_binary,
    test_server_binary,
)

__all__ = [
    "SEARCH_ATTRIBUTE_KEYS",
    "DevServerProcess",
    "free_port",
    "start_dev_server",
    "start_time_skipping",
    "temporal_binary",
    "test_server_binary",
    "wait_for_port",
]
