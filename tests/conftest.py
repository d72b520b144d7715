"""Shared fixtures and hypothesis profiles: `fast` by default; `deep` (`scripts/test --deep`, or
HYPOTHESIS_PROFILE=deep) runs 10^5 examples of each property, e.g. 10^5 chunkings of each golden
stream."""

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=100_000, deadline=None)
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "fast"))
