"""Suite-wide fixtures.

``_no_swallowed_exceptions`` is fastavro's tripwire: an exception raised inside a Cython callback or
``__del__`` is printed as "Exception ignored ..." on stderr instead of propagating. Any test whose
captured stderr shows that line fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Tests never time anything: no hypothesis deadline (the 2-core CI machine is noisy). In CI the
# examples are derandomized so a run is reproducible; locally they stay random to find new cases.
settings.register_profile(
    "arrowflow",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
settings.load_profile("arrowflow")


@pytest.fixture(autouse=True)
def _no_swallowed_exceptions(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    _, err = capfd.readouterr()
    if "Exception ignored" in err:
        pytest.fail(f"an exception was swallowed (stderr shows 'Exception ignored'):\n{err}")
