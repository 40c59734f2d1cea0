"""Prepared samples: the on-disk contract every source produces and every run consumes."""

from dinbench.prepared.contract import Prepared, is_prepared, load, prepare

__all__ = ["Prepared", "is_prepared", "load", "prepare"]
