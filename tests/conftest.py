"""Shared fixtures and hypothesis profiles (HYPOTHESIS_PROFILE=deep for a long run)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=5_000, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "fast"))
