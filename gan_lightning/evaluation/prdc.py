"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) and density and coverage (Naeem et al., ICML 2020)
of generated images against real ones, in a feature space (here the reference network's).

Each real feature gets a ball reaching its k-th nearest real neighbour, each generated one a ball reaching its k-th
nearest generated neighbour (k = 3 in both papers' recommended settings for precision/recall; 5 for density/coverage
in theirs; one k here, default 3):
- precision: share of generated samples inside at least one real ball (fidelity);
- recall: share of real samples inside at least one generated ball (diversity);
- density: generated samples counted once per real ball they fall in, divided by k and their number (1 on average
  for samples from the real distribution; above 1 where they crowd the real data's dense regions);
- coverage: share of real balls holding at least one generated sample.
Written with ``torch.cdist`` on the features (the ``prdc`` package computes the same with numpy and scikit-learn,
neither of which the rest of the project needs); distances are computed in chunks, never as one N x N matrix twice.
"""

from __future__ import annotations

import torch


def kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    radii = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the first is the row itself, at distance 0
    return torch.cat(radii)


@torch.no_grad()
def precision_recall_density_coverage(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 2048
) -> dict[str, float]:
    if k < 1 or len(real) <= k or len(fake) <= k:
        raise ValueError(f"k={k} needs more than k real and generated samples ({len(real)}, {len(fake)})")
    real, fake = real.float(), fake.float()
    real_r, fake_r = kth_neighbour_radius(real, k, chunk), kth_neighbour_radius(fake, k, chunk)
    in_real_balls = torch.zeros(len(fake))  # per generated sample: how many real balls hold it
    real_covered = torch.zeros(len(real), dtype=torch.bool)
    real_recalled = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(real), chunk):
        d = torch.cdist(real[i : i + chunk], fake)  # (real chunk, fake)
        inside = d <= real_r[i : i + chunk, None]
        in_real_balls += inside.sum(0).float().cpu()
        real_covered[i : i + chunk] = inside.any(1).cpu()
        real_recalled[i : i + chunk] = (d <= fake_r[None, :]).any(1).cpu()
    return {
        "precision": float((in_real_balls > 0).float().mean()),
        "recall": float(real_recalled.float().mean()),
        "density": float(in_real_balls.sum() / (k * len(fake))),
        "coverage": float(real_covered.float().mean()),
    }
