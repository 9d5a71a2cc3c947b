"""The workflow tests' stack (API served on 127.0.0.1, a worker, a Temporal dev server)."""

from tests.workflows.conftest import github, jira, stack, temporal, webhook  # noqa: F401 - fixtures
