"""Hypothesis profiles for the whole suite.

`ci` (loaded when the CI environment variable is set): reproducible (derandomized, no
example database) and without deadlines, since CI machines are shared and slow.
`dev` (the default): random exploration with the local example database, no deadlines.
Tests that need more examples than the profile's default set `max_examples` themselves.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
