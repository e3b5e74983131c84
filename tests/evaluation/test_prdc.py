"""Precision, recall, density and coverage against a direct computation, and their wiring into the generator metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan_lightning.evaluation.prdc import precision_recall_density_coverage


def _by_hand(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The papers' definitions, written out with full distance matrices and loops."""

    def radii(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]

    rr, fr = radii(real), radii(fake)
    d = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
    precision = np.mean([any(d[i, j] <= rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[i, j] <= fr[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d[i, j] <= rr[i] for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([d[i].min() <= rr[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_matches_the_definitions(shift):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 4)).astype(np.float32)
    fake = (rng.normal(size=(50, 4)) * 0.7 + shift).astype(np.float32)
    got = precision_recall_density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=3, chunk=16)  # chunked
    assert got == pytest.approx(_by_hand(real, fake, 3), abs=1e-6)


def test_separated_distributions_score_zero_and_identical_ones_high():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    far = precision_recall_density_coverage(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    same = precision_recall_density_coverage(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] >= 1.0
    with pytest.raises(ValueError, match="needs more than k"):
        precision_recall_density_coverage(real[:3], real[:3], k=3)
