"""Synthesis strategies: pure functions of (pool, generator) -> Sample, behind a registry."""

from hisyngen.synthesis.base import BACKGROUND_POLICIES, Sample, Strategy, sample_rng
from hisyngen.synthesis.registry import STRATEGIES, describe_strategies, make_strategy, strategy_names

# Importing the modules registers the built-in strategies.
from hisyngen.synthesis import mosaic as _mosaic  # noqa: E402,F401  isort: skip
from hisyngen.synthesis import bezier as _bezier  # noqa: E402,F401  isort: skip
from hisyngen.synthesis import baselines as _baselines  # noqa: E402,F401  isort: skip

__all__ = ["BACKGROUND_POLICIES", "STRATEGIES", "Sample", "Strategy", "describe_strategies", "make_strategy",
           "sample_rng", "strategy_names"]
