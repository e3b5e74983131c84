"""Where a trained classifier of the SSL study errs, and why, on the validation set only (no test image is read).

    python -m bench.split_errors                       # every finished run of bench/results/runs/ssl_study
    python -m bench.split_errors --runs A_game A_ablation --out bench/results/split_errors

For each run (its run directory: ``checkpoints/last.ckpt``, ``labeled_indices.json``), the final EMA classifier on
the run's own validation set (held-out training images):
- **error per class** and the most frequent confusions (true → predicted);
- **the labeled images behind them**: for each mistake, the labeled image nearest to it in the classifier's own
  features (its last layer's input); a labeled image of the predicted class that is the nearest one to many mistakes
  is what pulls them over;
- for a game (Triple-GAN) also **G**, per class: the share of G(z, y) the shipped reference network reads as y
  (its conditional accuracy, class by class), and **D** on the mistakes: the share where D scores the pair with the
  true label above the pair with the classifier's label (D then pushes C the right way).
Writes ``<out>.json`` (every number), ``<out>.md`` (one table, one row per run), a figure of the validation images
every run gets wrong (``--figure``, the first 90) and one of each run's top confusion beside its labeled images of
that class (``--confusions``): the docs' two figures for the whole study's default ``--out``, else beside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.plots import write
from gan_lightning.checkpoints import load_game
from gan_lightning.data.sources import load_idx
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation.analysis import top_confusions
from gan_lightning.evaluation.reference import load_reference

SHIPPED = Path(__file__).resolve().parent.parent / "gan_lightning" / "references" / "MNIST.pt"
FIGURE_MAX = 90  # images in the figure of the mistakes every run makes (10 rows)
RUN_NAME = re.compile(
    r"mnist(?P<n>\d+)_split(?P<split>\d+)_(?P<minutes>[\d.]+)min(?:_(?P<preset>\w+?))?_(?P<run>game|ablation)$"
)


def last_layer_features(network: nn.Module, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(the input of the network's last linear layer, its logits) for every image of ``x``."""
    head = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().flatten(1)))
    try:
        with torch.no_grad():
            logits = torch.cat([network(x[i : i + batch]) for i in range(0, len(x), batch)])
    finally:
        hook.remove()
    return torch.cat(seen), logits


def analyse_run(run_dir: Path, train_x: torch.Tensor, train_y: torch.Tensor, reference: nn.Module) -> dict[str, Any]:
    model, _ = load_game(run_dir / "checkpoints" / "last.ckpt")
    split = json.loads((run_dir / "labeled_indices.json").read_text())
    labeled, val = torch.tensor(split["indices"]), torch.tensor(split["val_indices"])
    if not len(val):
        raise SystemExit(f"error: {run_dir} has no validation set (data.val_size=0): nothing to analyse")
    k = int(train_y.max()) + 1
    ema = model.ema.module.eval()
    val_f, val_logits = last_layer_features(ema, model.scale(train_x[val]))
    lab_f, _ = last_layer_features(ema, model.scale(train_x[labeled]))
    pred, y = val_logits.argmax(1), train_y[val]
    wrong = (pred != y).nonzero().squeeze(1)
    per_class = [round(float((pred[y == c] != c).float().mean()), 4) for c in range(k)]
    nearest = labeled[torch.cdist(val_f[wrong], lab_f).argmin(1)]
    counts = torch.bincount(nearest, minlength=len(train_y))
    culprits = [
        {"index": int(i), "label": int(train_y[i]), "nearest_to_mistakes": int(counts[i])}
        for i in counts.argsort(descending=True)[:5].tolist()
        if counts[i] > 0
    ]
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "val_err_ema": round(float((pred != y).float().mean()), 4),
        "val_err_per_class": per_class,
        "confusions": [(c["true"], c["predicted"], c["count"]) for c in top_confusions(pred, y, k, 3)],
        "culprits": culprits,
        "mistakes_nearest_a_label_of_the_predicted_class": round(
            float((train_y[nearest] == pred[wrong]).float().mean()), 3
        )
        if len(wrong)
        else None,
    }
    out["labeled_indices"] = labeled.tolist()
    out["wrong_indices"] = val[wrong].tolist()  # in the official training set's numbering
    out["wrong_pred"] = pred[wrong].tolist()
    epoch = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    played = hasattr(model, "schedule") and not model.schedule.in_pretraining(epoch)
    if played and hasattr(model, "generator") and hasattr(model, "discriminator"):  # G and D trained
        gen = torch.Generator().manual_seed(0)
        per = 200
        z = model.sample_z(per * k, model.latent_dim, generator=gen)
        g_y = torch.arange(k).repeat_interleave(per)
        with torch.no_grad():
            images = model.generate(z, g_y)
            read = reference(images).argmax(1)
            out["g_cond_acc_per_class"] = [round(float((read[g_y == c] == c).float().mean()), 4) for c in range(k)]
            if len(wrong):
                x_w = model.scale(train_x[val][wrong])
                model.discriminator.eval()
                d_true = model.discriminator(x_w, y[wrong]).flatten()
                d_pred = model.discriminator(x_w, pred[wrong]).flatten()
                out["d_prefers_true_label"] = round(float((d_true > d_pred).float().mean()), 3)
    return out


def find_runs(root: Path) -> list[Path]:
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and RUN_NAME.match(d.name) and (d / "checkpoints" / "last.ckpt").is_file()
    )


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Where the study's classifiers err, on the validation set: `python -m bench.split_errors`",
        "",
        "The final EMA classifier of each run on its validation set (5,000 held-out training images; no test image is "
        "read). Culprits: the labeled images nearest, in the classifier's own features, to the most mistakes "
        "(#index (class): mistakes). G (game runs): the reference network's reading of G(z, y), per class (the "
        "three lowest). D: the share of mistakes where D scores the true label above the classifier's.",
        "",
        "| run | val error | of its mistakes, made by every run | worst classes (error) | top confusions "
        "(true→pred: count) | culprits | mistakes whose nearest label is of the predicted class | G: lowest classes "
        "| D prefers the true label |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        worst = sorted(range(len(r["val_err_per_class"])), key=lambda c: -r["val_err_per_class"][c])[:3]
        worst_s = ", ".join(f"{c} ({100 * r['val_err_per_class'][c]:.1f} %)" for c in worst)
        conf = ", ".join(f"{t}→{p}: {n}" for t, p, n in r["confusions"])
        culprits = ", ".join(f"#{c['index']} ({c['label']}): {c['nearest_to_mistakes']}" for c in r["culprits"][:3])
        near = r["mistakes_nearest_a_label_of_the_predicted_class"]
        g = r.get("g_cond_acc_per_class")
        g_s = ", ".join(f"{c}: {100 * g[c]:.1f} %" for c in sorted(range(len(g)), key=lambda c: g[c])[:3]) if g else "-"
        d = r.get("d_prefers_true_label")
        lines.append(
            f"| {name} | {100 * r['val_err_ema']:.2f} % | {r['wrong_in_every_run']} of {len(r['wrong_indices'])} "
            f"| {worst_s} | {conf} | {culprits} | "
            f"{'-' if near is None else f'{100 * near:.0f} %'} | {g_s} | {'-' if d is None else f'{100 * d:.0f} %'} |"
        )
    return "\n".join(lines)


def figure(results: dict[str, dict[str, Any]], x: torch.Tensor, y: torch.Tensor, reference: nn.Module, path: Path):
    """The validation images every run gets wrong: their label, what the runs say (most often), what the reference
    network trained on every label says."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    said: dict[int, list[int]] = {}
    for r in results.values():
        for i, p in zip(r["wrong_indices"], r["wrong_pred"]):
            said.setdefault(i, []).append(p)
    common = sorted(i for i, preds in said.items() if len(preds) == len(results))
    if not common:
        return
    shown = common[:FIGURE_MAX]  # an untrained run's thousands of mistakes: the first ones say enough
    with torch.no_grad():
        ref = reference(x[shown].float() / 255).argmax(1).tolist()
    cols = 9
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.15 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i, r in zip(axes.flat, shown, ref):
        runs = max(set(said[i]), key=said[i].count)
        ax.imshow(x[i, 0], cmap="gray_r")
        ax.set_title(f"{int(y[i])}: runs {runs}, ref {r}", fontsize=6, color="black" if r == int(y[i]) else "red")
    fig.suptitle(
        f"The {len(common)} validation images all {len(results)} runs get wrong"
        + (f" (the first {len(shown)})" if len(shown) < len(common) else "")
        + ": label, the runs' answer, the reference network's (red: it disagrees with the label too)",
        fontsize=7,
    )
    write(fig, path, dpi=120)


def confusion_figure(results: dict[str, dict[str, Any]], x: torch.Tensor, y: torch.Tensor, path: Path) -> None:
    """One row per run: its labeled images of the class it confuses most, then validation images of that class it
    reads as the other (its top confusion): what the labels show of the class, and what they leave out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, r) for name, r in results.items() if r["confusions"]]
    if not rows:
        return
    per = 10
    fig, axes = plt.subplots(len(rows), 2 * per + 1, figsize=(11.5, 0.75 * len(rows) + 0.5), squeeze=False)
    for (name, r), row in zip(rows, axes):
        true, pred, count = r["confusions"][0]
        labeled = [i for i in r["labeled_indices"] if int(y[i]) == true][:per]
        wrong = [i for i, p in zip(r["wrong_indices"], r["wrong_pred"]) if int(y[i]) == true and p == pred][:per]
        for ax in row:
            ax.axis("off")
        for ax, i in zip(row[:per], labeled):
            ax.imshow(x[i, 0], cmap="gray_r")
        for ax, i in zip(row[per + 1 :], wrong):
            ax.imshow(x[i, 0], cmap="Reds")
        # each half-row's caption runs on over the small images to its right: kept out of the layout (as titles the
        # captions were counted in, and the layout gave up)
        for ax, caption in (
            (row[0], f"{name}: its labeled {true}s"),
            (row[per + 1], f"validation {true}s it reads as {pred} ({count} of them)"),
        ):
            ax.text(0, 1.06, caption, transform=ax.transAxes, fontsize=6, ha="left", va="bottom", in_layout=False)
    write(fig, path, dpi=110)


OUT = Path("bench/results/split_errors")  # the whole study's analysis, and the two figures the docs show of it
FIGURES = (Path("docs/split_errors.png"), Path("docs/split_confusions.png"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, help="run directories (default: every run of --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, default=Path("bench/results/runs/ssl_study"))
    parser.add_argument("--data", default=os.environ.get("GAN_LIGHTNING_DATA", "data"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--figure", type=Path, help=f"default: {FIGURES[0]} for the whole study's --out, else <out>.png beside --out"
    )
    parser.add_argument(
        "--confusions", type=Path, help=f"default: {FIGURES[1]} for the whole study's --out, else <out>_confusions.png"
    )
    args = parser.parse_args(argv)
    # the docs' figures are the whole study's: an analysis written elsewhere keeps its figures beside it
    beside = (args.out.with_name(args.out.name + ".png"), args.out.with_name(args.out.name + "_confusions.png"))
    args.figure = args.figure or (FIGURES if args.out == OUT else beside)[0]
    args.confusions = args.confusions or (FIGURES if args.out == OUT else beside)[1]
    runs = args.runs or (find_runs(args.runs_dir) if args.runs_dir.is_dir() else [])
    if not runs:
        raise SystemExit(f"error: no finished run to analyse (give --runs, or runs under {args.runs_dir})")
    try:
        data = load_idx(args.data, "MNIST", False, True, True)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    assert data is not None
    reference = load_reference(SHIPPED, "MNIST")
    results = {run.name: analyse_run(run, data.train_x, data.train_y, reference) for run in runs}
    for r in results.values():  # mistakes every run makes: the validation images no classifier of the study gets
        others = [set(o["wrong_indices"]) for o in results.values() if o is not r]
        r["wrong_in_every_run"] = len(set(r["wrong_indices"]).intersection(*others)) if others else None
    text = table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    figure(results, data.train_x, data.train_y, reference, args.figure)
    confusion_figure(results, data.train_x, data.train_y, args.confusions)
    print(text)


if __name__ == "__main__":
    main()
