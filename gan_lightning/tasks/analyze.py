"""``task=analyze``: what a trained classifier looks at and how robust it is.

Classifier: Triple-GAN's C or EMA C (``task.network=c|ema``) or the baseline from ``ckpt_path``, or a reference
network from ``task.reference=<file>.pt``. Writes to the run directory (or ``task.out_dir``):
``saliency.png`` (test images and |d score / d x|), ``fgsm.csv`` + ``fgsm.png`` (accuracy against the FGSM
epsilon), ``fgsm_examples.png`` (one adversarial example per epsilon), ``class_visualisation.png`` (the input
that maximises each class score), ``confusions.png`` (test images of the most frequent mistakes, over the whole
test set) and ``analysis.json`` (every number)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from omegaconf import DictConfig, OmegaConf

from gan_lightning.capabilities import HasClassifier
from gan_lightning.checkpoints import build_datamodule, load_game
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import analysis, load_reference


def _classifier(cfg: DictConfig, network: str, reference: str | None):
    """(network in eval mode with frozen weights, name, datamodule)."""
    if reference:
        datamodule = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.paths.data_dir)
        net, name = load_reference(reference, datamodule.name), f"reference ({reference})"
    else:
        model, run_config = load_game(cfg.ckpt_path)
        if not isinstance(model, HasClassifier):
            raise ConfigError(
                f"ckpt_path={cfg.ckpt_path} holds a {type(model).__name__}, which has no classifier to analyse"
            )
        if network not in ("ema", "c"):
            raise ConfigError(f"task.network={network!r} is not one of ['ema', 'c']")
        if model.data_range != "unit":
            raise ConfigError(
                f"ckpt_path={cfg.ckpt_path}: its classifier takes {model.data_range} images; "
                "analysis needs [0, 1] inputs"
            )
        net = model.ema.module if network == "ema" else model.classifier
        name = f"{type(model).__name__} {'EMA C' if network == 'ema' else 'C'}"
        datamodule = build_datamodule(run_config["data"], cfg.paths.data_dir)
    return net.eval().requires_grad_(False), name, datamodule


def _image(ax, img: torch.Tensor, title: str, cmap: str = "gray") -> None:
    ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy() if img.dim() == 3 else img.numpy(), cmap=cmap, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def analyze(
    cfg: DictConfig,
    network: str = "ema",
    reference: str | None = None,
    n_saliency: int = 10,
    n_eval: int = 2000,
    epsilons=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    viz_steps: int = 200,
    viz_lr: float = 0.05,
    viz_l2: float = 1e-2,
    n_confusions: int = 5,
    seed: int = 0,
    out_dir: str | None = None,
) -> dict:
    """Write the analysis of one classifier; returns its numbers."""
    if n_saliency <= 0 or n_eval <= 0 or viz_steps < 0 or n_confusions <= 0:
        raise ConfigError("task.n_saliency, task.n_eval and task.n_confusions must be positive, task.viz_steps >= 0")
    if any(not 0 <= float(e) <= 1 for e in epsilons):
        raise ConfigError(f"task.epsilons={list(epsilons)} must lie in [0, 1] (images are in [0, 1])")
    net, name, dm = _classifier(cfg, network, reference)
    out = Path(out_dir or cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dm.splits.test_y), generator=gen)[:n_eval]
    x, y = dm.splits.test_x[idx].float() / 255.0, dm.splits.test_y[idx]
    K = int(dm.num_classes)

    # saliency: test images (top), |gradient| of their class score (bottom)
    xs, ys = x[:n_saliency], y[:n_saliency]
    sal = analysis.saliency(net, xs, ys)
    with torch.no_grad():
        pred = net(xs).argmax(1)
    fig, axes = plt.subplots(2, len(xs), figsize=(1.2 * len(xs), 2.8), squeeze=False)
    for i in range(len(xs)):
        _image(axes[0, i], xs[i], f"y={int(ys[i])} p={int(pred[i])}")
        _image(axes[1, i], sal[i], "saliency", cmap="hot")
    fig.suptitle(f"{name}: saliency |d score_y / d x|", fontsize=9)
    fig.savefig(out / "saliency.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # FGSM: accuracy against epsilon, and one example per epsilon
    curve = analysis.fgsm_curve(net, x, y, epsilons)
    with (out / "fgsm.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epsilon", "accuracy"])
        writer.writeheader()
        writer.writerows(curve)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot([r["epsilon"] for r in curve], [100 * r["accuracy"] for r in curve], marker="o")
    ax.set(xlabel="FGSM epsilon", ylabel="test accuracy (%)", title=f"{name} ({len(y)} test images)", ylim=(0, 100))
    ax.grid(alpha=0.3)
    fig.savefig(out / "fgsm.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    fig, axes = plt.subplots(1, len(epsilons), figsize=(1.3 * len(epsilons), 1.7), squeeze=False)
    for j, eps in enumerate(epsilons):
        adv = analysis.fgsm(net, x[:1], y[:1], float(eps))
        with torch.no_grad():
            p = net(adv).softmax(1)[0]
        _image(axes[0, j], adv[0], f"eps={float(eps):.2f}\n{int(p.argmax())} ({float(p.max()):.0%})")
    fig.savefig(out / "fgsm_examples.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # class visualisation
    images, probs = analysis.class_visualisation(
        net, tuple(x.shape[1:]), K, steps=viz_steps, lr=viz_lr, l2=viz_l2, seed=seed
    )
    fig, axes = plt.subplots(1, K, figsize=(1.2 * K, 1.6), squeeze=False)
    for k in range(K):
        _image(axes[0, k], images[k].cpu(), f"{k}: p={float(probs[k]):.2f}")
    fig.suptitle(f"{name}: inputs maximising each class score", fontsize=9)
    fig.savefig(out / "class_visualisation.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # the most frequent mistakes over the whole test set, with up to 10 of their images each
    test_x, test_y = dm.splits.test_x, dm.splits.test_y
    test_pred = analysis.predict(net, test_x)
    confusions = analysis.top_confusions(test_pred, test_y, K, n_confusions)
    fig, axes = plt.subplots(max(1, len(confusions)), 10, figsize=(12, 1.3 * max(1, len(confusions))), squeeze=False)
    for row, c in zip(axes, confusions):
        shown = ((test_y == c["true"]) & (test_pred == c["predicted"])).nonzero().flatten()[:10]
        for ax in row:
            ax.axis("off")
        for ax, i in zip(row, shown):
            _image(ax, test_x[i].float() / 255.0, f"{c['true']} as {c['predicted']}")
        row[0].set_title(f"{c['true']} as {c['predicted']}: {c['count']}", fontsize=8)
    fig.suptitle(f"{name}: the most frequent mistakes on the {len(test_y)} test images", fontsize=9)
    fig.savefig(out / "confusions.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    result = {
        "classifier": name,
        "dataset": dm.name,
        "n_eval": len(y),
        "accuracy": int((test_pred[idx] == y).sum()) / len(y),
        "fgsm": curve,
        "class_visualisation_prob": [float(p) for p in probs],
        "test_error": float((test_pred != test_y).float().mean()),
        "top_confusions": confusions,
    }
    (out / "analysis.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("classifier", "accuracy", "fgsm", "test_error")}))
    for c in confusions:
        print(
            f"true {c['true']} predicted {c['predicted']}: {c['count']} images "
            f"({c['share_of_errors']:.0%} of the errors, "
            f"{c['share_of_class']:.1%} of class {c['true']})"
        )
    for name in (
        "saliency.png",
        "fgsm.csv",
        "fgsm.png",
        "fgsm_examples.png",
        "class_visualisation.png",
        "confusions.png",
        "analysis.json",
    ):
        print(out / name)
    return result
