"""Filtering: real-vs-synthetic discriminators, generate-until-N filtering, realism reports.

Import the submodules directly (they import torch): ``hisyngen.filtering.train``,
``hisyngen.filtering.filter``, ``hisyngen.filtering.realism``.
"""
