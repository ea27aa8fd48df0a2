"""processor.settings: what the worker's Faust app is given, and what is refused."""

from __future__ import annotations

import pytest

from processor.errors import ConfigError
from processor.runtime.faust_app import app_options
from processor.settings import Settings


def test_the_worker_compresses_nothing_by_default_and_what_it_is_told_otherwise() -> None:
    assert Settings().compression == "none"
    assert app_options("b:9092", 4)["producer_compression_type"] is None
    assert app_options("b:9092", 4, Settings.load({"compression": "lz4"}).compression)["producer_compression_type"] == "lz4"


def test_an_unknown_compression_or_batch_size_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match="one of none, lz4, gzip"):
        Settings.load({"compression": "zstd"})
    with pytest.raises(ConfigError, match="must be positive"):
        Settings.load({"batch_max": 0})
