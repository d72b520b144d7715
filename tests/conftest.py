"""Shared fixtures and hypothesis profiles (HYPOTHESIS_PROFILE=deep for a long run)."""

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=5_000, deadline=None)
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "fast"))
