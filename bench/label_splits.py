"""What sets the official labeled splits of MNIST apart, measured on the labeled images and the validation set only.

    python -m bench.label_splits   # splits 1-5, 100 labels: bench/results/label_splits.md, docs/label_splits.png

For each split's 100 labeled images (``data.label_split=official``), and nothing of the test set:
- **atypical labels**: the labeled images the shipped reference network (trained on all 60,000 labels) reads as
  another class or with less than 90 % confidence, and each image's distance to its class's centre in the reference
  features, as a percentile of the validation images of that class (100: farther than every one of them);
- **coverage**: the validation set (5,000 held-out training images) classified by its nearest labeled image, in
  pixels and in the reference features: the error per class, and the most frequent confusions. A class whose few
  labeled images sit at one end of its variety leaves the rest of it to the unlabeled data.
The figure shows each split's labeled images, one row per class, atypical ones framed in red.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from bench.plots import write
from gan_lightning.data.batches import held_out_per_class, official_split
from gan_lightning.data.sources import load_idx
from gan_lightning.evaluation.reference import load_reference

SHIPPED = Path(__file__).resolve().parent.parent / "gan_lightning" / "references" / "MNIST.pt"


def nearest_labeled_error(
    train_f: torch.Tensor, train_y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor, k: int = 10
) -> tuple[float, torch.Tensor, list[tuple[int, int, int]]]:
    """1-NN from the labeled set: overall error, error per class, the three most frequent (true, predicted, count)."""
    pred = train_y[torch.cdist(val_f, train_f).argmin(1)]
    per_class = torch.stack([(pred[val_y == c] != c).float().mean() for c in range(k)])
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((val_y, pred), torch.ones_like(val_y), accumulate=True)
    confusion.fill_diagonal_(0)
    top = confusion.flatten().topk(3)
    pairs = [(int(i) // k, int(i) % k, int(v)) for v, i in zip(top.values, top.indices) if v > 0]
    return float((pred != val_y).float().mean()), per_class, pairs


def analyse(data_root: str, splits: list[int], n_labeled: int = 100, val_size: int = 5000) -> dict:
    data = load_idx(data_root, "MNIST", False, True, True)
    assert data is not None
    x, y = data.train_x, data.train_y
    reference = load_reference(SHIPPED, "MNIST")
    with torch.no_grad():
        feats, probs = [], []
        for i in range(0, len(x), 2000):
            f, logits = reference.features_and_logits(x[i : i + 2000].float() / 255)
            feats.append(f)
            probs.append(logits.softmax(1))
    features, prob = torch.cat(feats), torch.cat(probs)
    pixels = x.flatten(1).float() / 255
    out: dict = {"n_labeled": n_labeled, "val_size": val_size, "splits": {}}
    for split in splits:
        labeled = official_split(y, n_labeled, 10, split)
        val = held_out_per_class(y, val_size, 10, 0, exclude=labeled)  # the datamodule's validation set (val_seed 0)
        centre = torch.stack([features[val][y[val] == c].mean(0) for c in range(10)])
        images = []
        for i in labeled.tolist():
            c = int(y[i])
            dist = (features[i] - centre[c]).norm()
            val_dist = (features[val][y[val] == c] - centre[c]).norm(dim=1)
            images.append(
                {
                    "index": i,
                    "label": c,
                    "ref_pred": int(prob[i].argmax()),
                    "ref_conf": round(float(prob[i, c]), 4),
                    "percentile": round(100 * float((val_dist < dist).float().mean()), 1),
                }
            )
        atypical = [im for im in images if im["ref_pred"] != im["label"] or im["ref_conf"] < 0.9]
        result: dict[str, Any] = {"atypical": atypical, "images": images}
        for space, f in (("pixels", pixels), ("reference", features)):
            err, per_class, pairs = nearest_labeled_error(f[labeled], y[labeled], f[val], y[val])
            result[f"nn_err_{space}"] = round(err, 4)
            result[f"nn_err_per_class_{space}"] = [round(float(v), 4) for v in per_class]
            result[f"nn_confusions_{space}"] = pairs
        result["far_labels"] = sum(im["percentile"] >= 95 for im in images)
        out["splits"][split] = result
    return out


def table(out: dict) -> str:
    lines = [
        f"# The official labeled splits of MNIST ({out['n_labeled']} labels): `python -m bench.label_splits`",
        "",
        "Measured on the labeled images and the validation set (held-out training images) only.",
        "",
        "| split | atypical labeled images (reference net: other class or < 90 % sure) "
        "| labels beyond the 95th percentile of their class | 1-NN error, pixels | 1-NN error, reference features "
        "| worst classes, pixels (error) | top confusions, pixels (true→pred: count) |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, r in out["splits"].items():
        atyp = (
            ", ".join(
                f"#{im['index']} ({im['label']}→{im['ref_pred']}, {100 * im['ref_conf']:.0f} %)" for im in r["atypical"]
            )
            or "none"
        )
        worst = sorted(range(10), key=lambda c: -r["nn_err_per_class_pixels"][c])[:3]
        worst_s = ", ".join(f"{c} ({100 * r['nn_err_per_class_pixels'][c]:.0f} %)" for c in worst)
        conf = ", ".join(f"{t}→{p}: {n}" for t, p, n in r["nn_confusions_pixels"])
        lines.append(
            f"| {split} | {atyp} | {r['far_labels']} | {100 * r['nn_err_pixels']:.1f} % "
            f"| {100 * r['nn_err_reference']:.2f} % "
            f"| {worst_s} | {conf} |"
        )
    return "\n".join(lines)


def figure(out: dict, data_root: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_idx(data_root, "MNIST", False, True, True)
    assert data is not None
    splits = list(out["splits"])
    per_class = out["n_labeled"] // 10
    fig, axes = plt.subplots(1, len(splits), figsize=(2.3 * len(splits), 2.6))
    for ax, split in zip(axes, splits):
        r = out["splits"][split]
        grid = torch.ones(10 * 30, per_class * 30)
        flagged = {im["index"] for im in r["atypical"]}
        rows: dict[int, list[int]] = {}
        for im in r["images"]:
            rows.setdefault(im["label"], []).append(im["index"])
        for c in range(10):
            for j, i in enumerate(rows[c]):
                grid[c * 30 + 1 : c * 30 + 29, j * 30 + 1 : j * 30 + 29] = 1 - data.train_x[i, 0].float() / 255
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        for c in range(10):
            for j, i in enumerate(rows[c]):
                if i in flagged:
                    ax.add_patch(plt.Rectangle((j * 30, c * 30), 29, 29, fill=False, color="red", lw=1.5))
        ax.set_title(f"split {split}: 1-NN {100 * r['nn_err_pixels']:.1f} %", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        "Official labeled splits of MNIST, one row per class; "
        "red: the reference net reads another class or is < 90 % sure",
        fontsize=8,
    )
    write(fig, path, dpi=130)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--data", default=os.environ.get("GAN_LIGHTNING_DATA", "data"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/label_splits"))
    parser.add_argument("--figure", type=Path, default=Path("docs/label_splits.png"))
    args = parser.parse_args(argv)
    out = analyse(args.data, args.splits, args.n_labeled)
    text = table(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    args.out.with_suffix(".md").write_text(text + "\n")
    figure(out, args.data, args.figure)
    print(text)


if __name__ == "__main__":
    main()
