"""Where a training iteration's time goes: ``torch.profiler`` over the framework's Lightning run of each model,
the top operators by their own (self) CPU time per iteration.

    python -m bench.profile                          # every model, fp32, this machine's threads
    python -m bench.profile --models triple_gan --iters 10 trainer.precision=bf16-mixed

Writes bench/results/profile_<device>.{json,md} with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

from bench.mnist100 import cpu_flags
from bench.speed import MODELS, build, data, timed_trainer
from gan_lightning.acceleration import apply_reuse_cpu_memory
from gan_lightning.console import drop_notices, filter_warnings


def profile_model(name: str, overrides: list[str], iters: int, warmup: int, top: int) -> dict:
    cfg, model = build(name, overrides)
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False)

    class Window(L.Callback):  # profile the batches after the warm-up ones
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == warmup:
                prof.start()

        def on_train_end(self, *args) -> None:
            prof.stop()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = timed_trainer(cfg, "cpu", warmup + iters, tmp, Window())
        start = time.perf_counter()
        trainer.fit(model, train_dataloaders=data(cfg, model, warmup + iters + 1, "cpu"))
        wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "model": name,
        "iters": iters,
        "wall_s": round(wall, 2),
        "self_cpu_ms_per_iter": round(total / 1e3 / iters, 2),
        "top": [
            {
                "op": e.key,
                "calls_per_iter": round(e.count / iters, 1),
                "self_ms_per_iter": round(e.self_cpu_time_total / 1e3 / iters, 2),
                "share": round(e.self_cpu_time_total / total, 4),
            }
            for e in rows
        ],
    }


def main() -> None:
    filter_warnings()  # the library notices a user cannot act on, as the CLI drops them
    drop_notices()
    # the timed runs are shorter than the default logging interval on purpose (the logging cadence of a real run)
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("overrides", nargs="*", help="config overrides (default: trainer.precision=32-true)")
    args = parser.parse_args()
    overrides = args.overrides or ["trainer.precision=32-true"]
    reuse_memory = apply_reuse_cpu_memory(build(args.models[0], overrides)[0].trainer.reuse_cpu_memory)  # as a run does
    results = [profile_model(name, overrides, args.iters, args.warmup, args.top) for name in args.models]
    meta = {
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "overrides": overrides,
        "reuse_cpu_memory": reuse_memory,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **cpu_flags(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_cpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [
        f"# Where the time goes (CPU, {meta['torch_threads']} threads, {' '.join(overrides)})",
        "",
        json.dumps(meta),
        "",
    ]
    for r in results:
        lines += [
            f"## {r['model']}: {r['self_cpu_ms_per_iter']} ms of operator time per iteration",
            "",
            "| operator | calls / iter | self ms / iter | share |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{t['op']}` | {t['calls_per_iter']} | {t['self_ms_per_iter']} | {100 * t['share']:.1f} % |"
            for t in r["top"]
        ]
        lines.append("")
    (out / "profile_cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
