"""Which scored candidates a filter keeps: per-stratum quotas, threshold or rank selection.

Pure functions of (candidate rows, scores, settings), so the kept set is reproducible and testable
without a model. Why strata: a discriminator that finds one class easier to call "synthetic" (the
rarest class, whose few single-tissue sources repeat in every sample that holds it) rejects that
class' candidates more often, and a plain threshold then shifts the kept corpus' class mix away
from the unfiltered one (measured: 25% -> 5% lymphocyte pixels on bcss-wsss-mini). Giving each
stratum a quota equal to its share of the unfiltered candidate stream keeps the class mix; the
discriminator only chooses *within* a stratum.

A candidate's stratum is its dominant class (most pixels) plus the set of classes it holds, e.g.
``"2:0+2"``: presence alone lets the kept samples shrink the rare class' area within the stratum,
dominance alone lets them drop it as the minor class (see README, filter benchmark).

Within a stratum the discriminator can still prefer candidates with less of a class (measured on
Mosaic: docs/method.md, "Matched class areas"). Rank mode therefore matches area too (``match_area``): it orders a stratum's candidates by their
class areas, rarest class first, cuts that order into ``quota`` runs of about ``oversample``
neighbours, and keeps the most realistic candidate of each run. The kept samples then spread over
the stratum's candidates along the rarest class' area (the order's first key; the other classes
only break ties), and each is still the best of ~``oversample`` candidates with nearly its area
of that class.
Settings, defaults and their sources: docs/method.md#filtering-and-selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from hisyngen.errors import HisynError

MODES = ("rank", "threshold")
"""``rank``: score a fixed budget (``oversample`` x count candidates) and keep each stratum's most
realistic ones; ``threshold``: keep candidates with p_real above the threshold, in index order,
until every quota is full (the paper's rule, with ``stratify=False``)."""

UNSTRATIFIED = "all"

DEFAULT_BATCH = 64
"""Candidates scored per batch. Part of a filtered corpus' identity (scores of a BatchNorm-folded
model are batch-aligned), so it lives here, beside the other settings the build config reads
without importing torch."""


ATTEMPTS_PER_KEPT = 1000
"""Threshold selection scores at most this many candidates per kept sample by default (a 0.1% acceptance floor)."""
MIN_MAX_ATTEMPTS = 2000
"""... and at least this many in all, whatever the count."""
MAX_ATTEMPTS_DEFAULT = f"max({ATTEMPTS_PER_KEPT} x count, {MIN_MAX_ATTEMPTS}), a 0.1% acceptance floor"
""":func:`default_max_attempts` in words, for the --max-attempts help and the build's config notes."""


def default_max_attempts(count: int) -> int:
    """Candidates a threshold filter may score for ``count`` kept samples unless told otherwise.

    1,000 per kept sample: a minimum acceptance rate of 0.1%. Real discriminators keep 0.3-6% of
    Mosaic/Bezier candidates on BCSS-WSSS (README), so the default lets them finish; the paper's
    WSSS4LUAD Mosaic (27 of 50,000) stops after the probe, with its rate.
    """
    return max(ATTEMPTS_PER_KEPT * count, MIN_MAX_ATTEMPTS)


@dataclass(frozen=True)
class Selection:
    """How a filter chooses its kept samples (part of a filtered corpus' identity)."""

    mode: str = "rank"
    stratify: bool = True
    oversample: float = 5.0
    """rank mode: candidates scored per kept sample (the budget is known before scoring starts)."""
    threshold: float = 0.5
    """threshold mode: keep p_real above this."""
    match_area: bool = True
    """rank mode: keep the most realistic of each run of candidates with neighbouring class areas
    (rarest class first) instead of a stratum's highest scores, so a class cannot shrink within it.
    Threshold mode keeps candidates in index order and ignores it."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HisynError(f"--selection must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 < self.threshold < 1.0:
            raise HisynError(f"--threshold must be in (0, 1), got {self.threshold}")
        if not self.oversample >= 1.0:
            raise HisynError(f"--oversample must be >= 1 (candidates scored per kept sample), got {self.oversample}")

    @classmethod
    def paper(cls, threshold: float = 0.5) -> "Selection":
        """The paper's filter: first N candidates with p_real > 0.5, no quotas."""
        return cls(mode="threshold", stratify=False, threshold=threshold)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> "Selection":
        """The inverse of :meth:`to_dict` (a recorded rank selection without match_area had it off)."""
        return cls(**{"match_area": False, **recorded})

    def budget(self, count: int) -> int:
        """rank mode: the number of candidates scored for ``count`` kept samples."""
        return max(count, math.ceil(count * self.oversample))

    def to_dict(self) -> dict[str, Any]:
        if self.mode == "rank":
            # match_area is written only when on: a rank corpus from before it (no key) was selected
            # without it, and its identity stays what it was.
            return {"mode": "rank", "stratify": self.stratify, "oversample": self.oversample,
                    **({"match_area": True} if self.match_area else {})}
        return {"mode": "threshold", "stratify": self.stratify, "threshold": self.threshold}

    def describe(self) -> str:
        quotas = "per-stratum quotas" if self.stratify else "no quotas"
        if self.mode == "rank":
            within = ", matched class areas" if self.match_area else ""
            return f"rank: most realistic of {self.oversample:g} x count candidates, {quotas}{within}"
        return f"threshold: p_real > {self.threshold:g} in index order, {quotas}"


def stratum(fractions: Sequence[float], stratify: bool = True) -> str:
    """The stratum of a candidate from its per-class pixel fractions (manifest ``fractions``)."""
    if not stratify:
        return UNSTRATIFIED
    present = [c for c, f in enumerate(fractions) if f > 0]
    if not present:
        return "none"  # all ignore / background
    dominant = max(present, key=lambda c: (fractions[c], -c))
    return f"{dominant}:{'+'.join(str(c) for c in present)}"


def quotas(strata: Sequence[str], count: int) -> dict[str, int]:
    """Split ``count`` over the strata in proportion to how often each occurs in ``strata``.

    Largest remainders (ties: the more frequent stratum, then the name), so the quotas sum to
    ``count`` exactly and depend only on the stratum counts.
    """
    if not strata:
        raise HisynError("no candidates to derive stratum quotas from")
    counts: dict[str, int] = {}
    for s in strata:
        counts[s] = counts.get(s, 0) + 1
    return _quotas_from_counts(counts, count)


def _quotas_from_counts(counts: dict[str, int], count: int) -> dict[str, int]:
    total = sum(counts.values())
    exact = {s: count * n / total for s, n in counts.items()}
    out = {s: math.floor(v) for s, v in exact.items()}
    left = count - sum(out.values())
    for s in sorted(counts, key=lambda s: (-(exact[s] - out[s]), -counts[s], s))[:left]:
        out[s] += 1
    return dict(sorted(out.items()))


AREA_DECIMALS = 3
"""Class fractions are compared rounded to 0.1% of the image when ordering by area, so two
candidates that differ by less hold the same area and the next-rarest class orders them."""


def select_rank(strata: Sequence[str], scores: Sequence[float], count: int,
                fractions: Sequence[Sequence[float]] | None = None) -> list[int]:
    """Positions kept by rank mode, in position (= candidate index) order.

    Without ``fractions``: each stratum's quota of its highest scores (ties: lower position). With
    them (``match_area``): the stratum's candidates ordered by :func:`area_order`, cut into
    ``quota`` runs of nearly equal length, and the highest score of each run.
    """
    if len(strata) != len(scores) or fractions is not None and len(fractions) != len(scores):
        raise ValueError("strata, scores and fractions differ in length")
    if count > len(strata):
        raise ValueError(f"cannot keep {count} of {len(strata)} candidates")
    quota = quotas(strata, count)
    by_stratum: dict[str, list[int]] = {}
    for position, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(position)
    best = lambda p: (scores[p], -p)  # noqa: E731  (the highest score; ties: the lower position)
    rarest_first = None if fractions is None else area_order(fractions)
    kept: list[int] = []
    for s, positions in by_stratum.items():
        q = quota[s]
        if rarest_first is None:
            kept.extend(sorted(positions, key=lambda p: (-scores[p], p))[:q])
            continue
        ordered = sorted(positions, key=lambda p: (rarest_first(p), p))
        n = len(ordered)
        kept.extend(max(ordered[k * n // q:(k + 1) * n // q], key=best) for k in range(q))
    return sorted(kept)


def area_order(fractions: Sequence[Sequence[float]]):
    """A sort key of candidate positions: their class fractions, the rarest class (fewest pixels
    over all ``fractions``) first, rounded to :data:`AREA_DECIMALS`.

    Rarest first because the rare class is the one a discriminator learns to reject (module
    docstring) and the one a segmentation model loses when it shrinks.
    """
    shares = [sum(f[c] for f in fractions) for c in range(len(fractions[0]))] if fractions else []
    rarest = sorted(range(len(shares)), key=lambda c: (shares[c], c))
    return lambda p: tuple(round(fractions[p][c], AREA_DECIMALS) for c in rarest)


def select_threshold(strata: Sequence[str], scores: Sequence[float], count: int, threshold: float,
                     stratify: bool) -> list[int] | None:
    """Positions kept by threshold mode from the candidates scored so far, or None if not yet done.

    Without quotas: the first ``count`` candidates above ``threshold`` (the paper). With quotas (from
    the strata of every candidate scored so far): the first ``quota[s]`` above the threshold in each
    stratum, once every stratum has that many.
    """
    passed = [p for p, score in enumerate(scores) if score > threshold]
    if not stratify:
        return passed[:count] if len(passed) >= count else None
    quota = quotas(strata, count)
    by_stratum: dict[str, list[int]] = {}
    for p in passed:
        by_stratum.setdefault(strata[p], []).append(p)
    if any(len(by_stratum.get(s, [])) < q for s, q in quota.items()):
        return None
    return sorted(p for s, q in quota.items() for p in by_stratum.get(s, [])[:q])


def stratum_report(strata: Sequence[str], scores: Sequence[float], kept: Sequence[int], count: int,
                   classes: Sequence[str], threshold: float | None = None) -> list[dict[str, Any]]:
    """Per stratum: quota, scored, kept, acceptance (kept / scored), mean score, p_real > threshold."""
    quota = quotas(strata, count)
    kept_set = set(kept)
    rows = []
    for s in sorted(quota, key=lambda s: (-quota[s], s)):
        positions = [p for p, t in enumerate(strata) if t == s]
        n_kept = sum(1 for p in positions if p in kept_set)
        row = {"stratum": s, "classes": stratum_names(s, classes), "quota": quota[s], "scored": len(positions),
               "kept": n_kept, "acceptance": round(n_kept / len(positions), 6) if positions else 0.0,
               "mean_score": round(sum(scores[p] for p in positions) / len(positions), 6)}
        if threshold is not None:
            row["above_threshold"] = sum(1 for p in positions if scores[p] > threshold)
        rows.append(row)
    return rows


def stratum_names(key: str, classes: Sequence[str]) -> str:
    """``"2:0+2"`` -> ``"LYM (TUM+LYM)"``: the dominant class, then the classes present."""
    if key in (UNSTRATIFIED, "none"):
        return key
    dominant, present = key.split(":")
    return f"{classes[int(dominant)]} ({'+'.join(classes[int(c)] for c in present.split('+'))})"


def pixel_shares(rows: Sequence[dict[str, Any]], num_classes: int) -> list[float]:
    """Each class' share of the tissue pixels of ``rows`` (manifest rows with ``fractions``)."""
    totals = [0.0] * num_classes
    for row in rows:
        for c, f in enumerate(row["fractions"][:num_classes]):
            totals[c] += f
    whole = sum(totals)
    return [round(t / whole, 6) if whole else 0.0 for t in totals]


class ThresholdTally:
    """Running counts of a threshold-mode filter (candidates and passes per stratum), so whether it
    is done, and how many candidates it will need, is known after each batch without rescanning."""

    def __init__(self, count: int, threshold: float, stratify: bool) -> None:
        self.count, self.threshold, self.stratify = count, threshold, stratify
        self.seen: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self.attempted = 0

    def add(self, strata: Sequence[str], scores: Sequence[float]) -> None:
        for s, score in zip(strata, scores):
            self.seen[s] = self.seen.get(s, 0) + 1
            if score > self.threshold:
                self.passed[s] = self.passed.get(s, 0) + 1
        self.attempted += len(strata)

    @property
    def kept(self) -> int:
        """Candidates that would be kept if the run stopped now."""
        if not self.stratify:
            return min(self.count, sum(self.passed.values()))
        if not self.seen:
            return 0
        quota = _quotas_from_counts(self.seen, self.count)
        return sum(min(q, self.passed.get(s, 0)) for s, q in quota.items())

    def done(self) -> bool:
        return self.attempted > 0 and self.kept >= self.count

    def outlook(self) -> tuple[float, str | None]:
        """(estimated candidates needed in all, the stratum that limits it; None without quotas)."""
        if not self.attempted:
            return math.inf, None
        if not self.stratify:
            passed = sum(self.passed.values())
            return (self.attempted * self.count / passed if passed else math.inf), None
        quota = _quotas_from_counts(self.seen, self.count)
        needs = {s: (self.attempted * q / self.passed[s] if self.passed.get(s) else math.inf)
                 for s, q in quota.items() if q}
        worst = max(needs, key=lambda s: (needs[s], s))
        return needs[worst], worst


def render_class_mix(class_mix: dict[str, Any]) -> str:
    """``TUM 25.1% -> 24.8% · STR ...``: each class' pixel share in the candidates, then in the kept samples."""
    return " · ".join(f"{name} {before:.1%} -> {after:.1%}"
                      for name, before, after in zip(class_mix["classes"], class_mix["candidates"], class_mix["kept"]))
