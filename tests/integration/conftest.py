from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_backend():
    """One temporary Prefect backend (SQLite) for all flow tests, as Prefect's testing guide recommends."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
