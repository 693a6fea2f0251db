"""Accuracies with what they rest on: the Wilson interval, a score with its images, the one chance rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Below this many images a held-out split cannot choose an epoch: one image moves top-1 by a point or more and the
# 95 % interval of a score near 50 % is wider than +-10 points, more than the epochs it is asked to tell apart differ.
MIN_SELECTION_IMAGES = 100


def wilson_interval(hits: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % for the default ``z``) of ``hits`` right out of ``count``, in percent."""
    if count <= 0:
        return 0.0, 100.0
    p, q = hits / count, z * z / count
    centre, half = p + q / 2, z * math.sqrt(p * (1 - p) / count + q / (4 * count))
    return 100 * max(0.0, (centre - half) / (1 + q)), 100 * min(1.0, (centre + half) / (1 + q))


def shows_top5(num_classes: int) -> bool:
    """Whether top-5 is worth printing: with five classes or fewer every answer is in the top 5 (100 %)."""
    return num_classes > 5


def score_text(acc: float, count: int) -> str:
    """An accuracy (%) with the images it rests on, ``92.20 % (9,220/10,000)``, and its 95 % interval where that is
    wider than +-1 point, ``66.7 % (6/9, 95 % CI 35-88)``."""
    hits = round(acc * count / 100)
    lo, hi = wilson_interval(hits, count)
    if hi - lo <= 2:
        return f"{acc:.2f} % ({hits:,}/{count:,})"
    return f"{acc:.1f} % ({hits:,}/{count:,}, 95 % CI {lo:.0f}\u2013{hi:.0f})"


def chance_rate(class_counts: Sequence[int]) -> float:
    """What always answering the largest class scores (%): 1/classes on a balanced set."""
    total = sum(class_counts)
    return 100.0 * max(class_counts) / total if total else 0.0


def chance_warning(acc: float, count: int, chance: float, what: str) -> list[str]:
    """The one chance-level rule of train, eval and the model card: a line when top-1 ``acc`` (% of ``count``
    images) does not beat ``chance`` (:func:`chance_rate`) within its 95 % interval."""
    if count <= 0 or wilson_interval(round(acc * count / 100), count)[0] > chance:
        return []
    return [
        f"{what} top-1 {score_text(acc, count)} does not beat chance ({chance:.1f} %, always answering the largest "
        "class): train for more epochs, with a lower --lr, or on more images"
    ]
