"""Shared test settings: hypothesis keeps nothing in the working tree (no example database, its caches in the
temporary directory), so a test run leaves the checkout unchanged."""
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tadlab-hypothesis")
settings.register_profile("tadlab", database=None, deadline=None)
settings.load_profile("tadlab")
