"""Shared test settings: no hypothesis database on disk, so a test run leaves the working tree unchanged."""
from hypothesis import settings

settings.register_profile("tadlab", database=None, deadline=None)
settings.load_profile("tadlab")
