"""Training speed, side by side in one process: a plain PyTorch loop vs. the framework's Lightning run,
same networks and batch sizes, for each model. Also FLOPs per iteration and the achieved share of the
machine's measured matmul peak. Also the framework's own iteration in a bare loop (no Lightning): the
difference to the Lightning run is Lightning's overhead.

    python -m bench.speed                                           # all models on the CPU
    python -m bench.speed --device cuda --cuda-graphs               # every game's iterations recorded as CUDA graphs
    python -m bench.speed --scaling --models gan dcgan triple_gan   # framework it/s against batch size and threads
    python -m bench.speed --sharing 1 2 --models triple_gan         # several runs at once on one machine
                                                                    # (GPU: --sharing 1 5)

Writes bench/results/speed_<device>.{json,md}. Median and spread (min-max) over --repeats, warm-up excluded.
One iteration = one update of every network (GANs: a D step and a G step; Triple-GAN: D, G and C steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

import gan_lightning  # noqa: F401 - config resolvers
from bench.mnist100 import cpu_flags
from bench.plain import PlainGAN, PlainTripleGAN
from gan_lightning.acceleration import (
    IterationGraph,
    apply_process_settings,
    compile_networks,
    make_capturable,
    record_iterations,
)
from gan_lightning.console import drop_notices, filter_warnings
from gan_lightning.data import StreamBatches
from gan_lightning.nets.blocks import MaskDropout
from gan_lightning.schema import register

CONF = Path(__file__).resolve().parent.parent / "conf"
register()  # the config schemas conf/ starts from
MODELS = ["gan", "dcgan", "cgan", "cdcgan", "triple_gan"]


def build(name: str, overrides: list[str]):
    extra = ["model.schedule.pretrain_epochs=0"] if name == "triple_gan" else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"model={name}", "paths.output_dir=/tmp", "paths.data_dir=/tmp", *extra, *overrides]
        )
    return cfg, instantiate(cfg.model)


def data(cfg, model, n_batches: int, device: str) -> StreamBatches:
    shape = tuple(cfg.data.image_shape)
    x = torch.randint(0, 256, (8000, *shape), dtype=torch.uint8)
    y = torch.randint(0, 10, (8000,))
    return StreamBatches({"train": (x, y), "labeled": (x[:100], y[:100])}, model.plan.game.streams, n_batches, seed=0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def to(batch, device):
    return {k: (x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for k, (x, y) in batch.items()}


def torch_dropout(module: torch.nn.Module) -> None:
    """Swap the framework's ``MaskDropout`` layers for torch's ``nn.Dropout`` (what a plain loop would use)."""
    for child_name, child in module.named_children():
        if isinstance(child, MaskDropout):
            setattr(module, child_name, torch.nn.Dropout(child.p))
        else:
            torch_dropout(child)


def time_plain(name, overrides, device, warmup, iters) -> tuple[float, float]:
    cfg, model = build(name, overrides)
    torch_dropout(model)
    model.to(device).train()
    loop = PlainTripleGAN(model) if name == "triple_gan" else PlainGAN(model)
    batches = iter(data(cfg, model, warmup + iters + 1, device))
    for _ in range(warmup):
        loop.step(to(next(batches), device))
    with FlopCounterMode(display=False) as counter:
        loop.step(to(next(batches), device))
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        loop.step(to(next(batches), device))
    sync(device)
    return iters / (time.perf_counter() - start), counter.get_total_flops()


def time_bare(name, overrides, device, warmup, iters, cuda_graphs: bool = False) -> float | None:
    """The framework's own iteration (``model.iteration``: same losses, steps and EMA update as its Lightning
    run) in a loop without Lightning; ``None`` for games without one."""
    cfg, model = build(name, overrides)
    if not hasattr(model, "iteration"):
        return None
    model.to(device).train()
    model.setup("fit")
    optimizers = model.bare_optimizers()
    model.bare_steps = True
    graph = IterationGraph(keep=model.GRAPH_KINDS) if cuda_graphs else None
    if graph is not None:
        make_capturable(optimizers.values())
    batches = iter(data(cfg, model, warmup + iters, device))
    # the Lightning run's precision plugin: bf16-mixed = autocast around the step
    autocast = torch.autocast(
        device, dtype=torch.bfloat16, enabled=str(cfg.trainer.precision) == "bf16-mixed", cache_enabled=False
    )

    def step():
        with autocast:
            batch = model.on_after_batch_transfer(to(next(batches), device), 0)
            kind = model.iteration_kind(optimizers)
            if graph is None:
                model.iteration(batch, optimizers, kind)
            else:
                graph(kind, lambda b: model.iteration(b, optimizers, kind), batch)

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters / (time.perf_counter() - start)


class _Clock(L.Callback):
    """Host clock after the last warm-up batch and after the last batch, the device synchronised at both
    (only there: a sync per batch would stop the host from queueing work ahead, which the plain loop does)."""

    def __init__(self, warmup: int, last: int, device: str, barrier: Callable[[], None] | None = None) -> None:
        self.warmup, self.last, self.device, self.barrier = warmup, last, device, barrier
        self.times: dict = {}
        self.wall: dict = {}  # the same two moments on the wall clock (comparable across processes)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx in (self.warmup - 1, self.last):
            sync(self.device)
            if batch_idx == self.warmup - 1 and self.barrier is not None:
                self.barrier()  # --sharing: every run starts its timed span together
            self.times[batch_idx] = time.perf_counter()
            self.wall[batch_idx] = time.time()


def timed_trainer(cfg, device: str, batches: int, log_dir: str, callback: L.Callback) -> L.Trainer:
    """The framework's Lightning run as a benchmark times it: one epoch of ``batches`` batches, the run's precision,
    TensorBoard logging at its default cadence, no checkpoints, progress bar, summary or validation."""
    return L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=batches,
        precision=cfg.trainer.precision,
        logger=L.pytorch.loggers.TensorBoardLogger(log_dir),
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[callback],
    )


def time_framework(
    name,
    overrides,
    device,
    warmup,
    iters,
    compile_nets: bool = False,
    cuda_graphs: bool = False,
    clock: _Clock | None = None,
) -> float:
    cfg, model = build(name, overrides)
    if compile_nets:  # trainer.compile=true
        compile_networks(model)
    if cuda_graphs and hasattr(model, "iteration_kind"):  # trainer.cuda_graphs=true
        record_iterations(model)
    clock = clock or _Clock(warmup, warmup + iters - 1, device)
    with tempfile.TemporaryDirectory() as tmp:
        timed_trainer(cfg, device, warmup + iters, tmp, clock).fit(
            model, train_dataloaders=data(cfg, model, warmup + iters, device)
        )
    # a GAN cycle of max(d_steps, g_steps) batches holds d_steps D and g_steps G updates (1:1: both every batch)
    batches_per_iter = 1 if name == "triple_gan" else max(cfg.model.d_steps, cfg.model.g_steps)
    return iters / (clock.times[warmup + iters - 1] - clock.times[warmup - 1]) / batches_per_iter


def scaled_batches(name: str, factor: float) -> list[str]:
    """Overrides that scale every stream's batch size (and Triple-GAN's generator batch) by ``factor``."""
    _, model = build(name, [])
    out = [
        f"model.batch_sizes.{k}={max(1, round(s['batch_size'] * factor))}" for k, s in model.plan.game.streams.items()
    ]
    if name == "triple_gan":
        out.append(f"model.generator_batch={max(10, round(model.hparams.generator_batch * factor / 10) * 10)}")
    return out


def process_settings(args) -> bool:
    """The run's process-wide settings (``trainer.matmul_precision``, ``trainer.reuse_cpu_memory``) from the overrides,
    applied to this process: the plain loop gets them too, so the ratios count only the steps' own code (and the peak
    is measured with them). Whether CPU memory reuse is on."""
    return apply_process_settings(
        OmegaConf.to_container(build(args.models[0], args.overrides)[0].trainer, resolve=True)
    )


def run_meta(args, **extra) -> dict:
    """What every results file records about the machine and the run."""
    return {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "iters": args.iters,
        "repeats": args.repeats,
        "overrides": args.overrides,
        "cuda_graphs": args.cuda_graphs,
        "matmul_precision": torch.get_float32_matmul_precision(),
        **extra,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **cpu_flags(),
    }


def scaling(args) -> None:
    """Framework it/s and images/s against batch size (x0.5, x1, x2) and threads (1, 2): one table."""
    reuse_memory = process_settings(args)
    rows = []
    for name in args.models:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for factor in (0.5, 1.0, 2.0):
                overrides = [*args.overrides, *scaled_batches(name, factor)]
                its = statistics.median(
                    time_framework(name, overrides, args.device, args.warmup, args.iters) for _ in range(args.repeats)
                )
                _, model = build(name, overrides)
                images = sum(int(s["batch_size"]) for s in model.plan.game.streams.values())
                rows.append(
                    {
                        "model": name,
                        "threads": threads,
                        "batch_factor": factor,
                        "images_per_iter": images,
                        "it_s": its,
                        "images_s": its * images,
                    }
                )
                print(
                    f"{name}: {threads} threads, batch x{factor}: {its:.2f} it/s, {its * images:.0f} images/s",
                    flush=True,
                )
    meta = run_meta(args, warmup=args.warmup, reuse_cpu_memory=reuse_memory)
    lines = [
        "| model | threads | batch | images/iter | it/s | images/s | images/s vs 1 thread, x1 batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["threads"] == 1 and b["batch_factor"] == 1.0)
        lines.append(
            f"| {r['model']} | {r['threads']} | x{r['batch_factor']:g} | {r['images_per_iter']} | {r['it_s']:.2f} "
            f"| {r['images_s']:.0f} "
            f"| {r['images_s'] / base['images_s']:.2f}x |"
        )
    write_table(args, "scaling", f"Training speed against batch size and threads ({args.device})", meta, rows, lines)


def write_table(args, kind: str, title: str, meta: dict, rows: list[dict], lines: list[str]) -> None:
    """``<out>/speed_<kind>_<device>[_<tag>].{json,md}``: the rows with their metadata, and the Markdown table; printed
    too."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stem = Path(args.out) / f"speed_{kind}_{args.device}{'_' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(f"# {title}\n\n{json.dumps(meta)}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def sharing_worker(args) -> None:
    """One of ``--sharing``'s runs (a subprocess): warm up, say so (``<dir>/<id>.ready``), wait for ``<dir>/go``, time
    the framework's run and write ``<dir>/<id>.json``."""
    folder, ident = Path(args.worker).parent, Path(args.worker).name
    torch.set_num_threads(args.threads)
    process_settings(args)

    def barrier() -> None:
        (folder / f"{ident}.ready").touch()
        while not (folder / "go").exists():
            time.sleep(0.005)

    clock = _Clock(args.warmup, args.warmup + args.iters - 1, args.device, barrier)
    its = time_framework(
        args.models[0], args.overrides, args.device, args.warmup, args.iters, cuda_graphs=args.cuda_graphs, clock=clock
    )
    (folder / f"{ident}.json").write_text(
        json.dumps({"it_s": its, "start": clock.wall[args.warmup - 1], "end": clock.wall[args.warmup + args.iters - 1]})
    )


def run_together(name: str, runs: int, threads: int, args) -> list[dict]:
    """``runs`` framework runs of ``name`` in separate processes on this machine, ``threads`` torch threads each, their
    timed spans started together (after every run's warm-up); each run's it/s and wall-clock span."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cmd = [
            sys.executable,
            "-m",
            "bench.speed",
            "--models",
            name,
            "--device",
            args.device,
            "--iters",
            str(args.iters),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(threads),
            *(["--cuda-graphs"] if args.cuda_graphs else []),
            *args.overrides,
        ]
        procs = []
        for i in range(runs):  # stderr to a file: a full pipe would stall a run that nobody reads yet
            with (folder / f"{i}.err").open("w") as err:
                procs.append(
                    subprocess.Popen(
                        [*cmd, "--worker", str(folder / str(i))],
                        cwd=Path(__file__).resolve().parent.parent,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )

        def check() -> None:
            for i, p in enumerate(procs):
                if p.poll() not in (None, 0):
                    raise RuntimeError(
                        f"a --sharing run of {name} failed:\n{(folder / f'{i}.err').read_text()[-2000:]}"
                    )

        try:
            while not all((folder / f"{i}.ready").exists() for i in range(runs)):
                check()
                time.sleep(0.01)
            (folder / "go").touch()
            for p in procs:
                p.wait()
            check()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        return [json.loads((folder / f"{i}.json").read_text()) for i in range(runs)]


def sharing(args) -> None:
    """Several runs of one model at once on this machine (e.g. five labeled splits on one GPU): each run's it/s and
    the machine's total, the CPU's threads shared out between the runs; one table."""
    total_threads = torch.get_num_threads()
    reuse_memory = process_settings(args)  # as in each run: the metadata says what they ran with
    rows = []
    for name in args.models:
        _, model = build(name, args.overrides)
        images = sum(int(s["batch_size"]) for s in model.plan.game.streams.values())
        for runs in args.sharing:
            threads = max(1, total_threads // runs)
            totals, per_run, overlaps = [], [], []
            for _ in range(args.repeats):
                results = run_together(name, runs, threads, args)
                # the machine's throughput: every run's iterations over the wall time from the common start to the last
                # end
                span = max(r["end"] for r in results) - min(r["start"] for r in results)
                totals.append(runs * args.iters / span)
                per_run += [r["it_s"] for r in results]
                overlaps.append(min(r["end"] for r in results) - max(r["start"] for r in results))
            rows.append(
                {
                    "model": name,
                    "runs": runs,
                    "threads_per_run": threads,
                    "images_per_iter": images,
                    "per_run_it_s": summary(per_run),
                    "total_it_s": summary(totals),
                    "overlap_s": overlaps,
                }
            )
            print(
                f"{name}: {runs} at once, {threads} threads each: {statistics.median(per_run):.2f} it/s per run, "
                f"{statistics.median(totals):.2f} it/s in all",
                flush=True,
            )
    meta = run_meta(args, warmup=args.warmup, reuse_cpu_memory=reuse_memory)
    lines = [
        "| model | runs at once | threads per run | it/s per run (min-max) | it/s in all (min-max) | images/s in all "
        "| in all vs one run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["runs"] == min(args.sharing))
        p, t = r["per_run_it_s"], r["total_it_s"]
        lines.append(
            f"| {r['model']} | {r['runs']} | {r['threads_per_run']} "
            f"| {p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f}) "
            f"| {t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f}) | {t['median'] * r['images_per_iter']:.0f} "
            f"| {t['median'] / base['total_it_s']['median']:.2f}x |"
        )
    write_table(args, "sharing", f"Several runs at once on one machine ({meta['device']})", meta, rows, lines)


def matmul_peak(device: str, n: int) -> float:
    """Best of several timed fp32 products of ``n`` x ``n`` matrices: the FLOP/s this device reaches on dense work."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(3):
        a @ b
        sync(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * 4 / (time.perf_counter() - start))
    return best


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the framework's networks under torch.compile (trainer.compile=true); "
        "compilation happens in the warm-up, which should then be a few iterations longer",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="the games' iterations recorded as CUDA graphs (trainer.cuda_graphs=true)",
    )
    parser.add_argument(
        "--peak-size",
        type=int,
        default=None,
        metavar="N",
        help="the matrices' size for the matmul peak (default 4096 on a GPU, 2048 on a CPU; smaller is quicker and "
        "reads lower)",
    )
    parser.add_argument("--tag", default="", help="appended to the results' file names (e.g. before, after)")
    parser.add_argument(
        "--scaling", action="store_true", help="framework it/s against batch size (x0.5, x1, x2) and threads (1, 2)"
    )
    parser.add_argument(
        "--sharing",
        nargs="+",
        type=int,
        metavar="N",
        help="N framework runs of each model at once in separate "
        "processes, the threads shared out (e.g. 1 2 on a CPU, 1 5 on a GPU): each run's it/s and the total",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help=argparse.SUPPRESS
    )  # a --sharing run's share of the threads
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a --sharing run: <folder>/<id>
    parser.add_argument(
        "overrides",
        nargs="*",
        help="config overrides for the framework and the plain loop (e.g. model.channels_last=false)",
    )
    args = parser.parse_args(argv)
    if args.cuda_graphs and args.device != "cuda":
        parser.error("--cuda-graphs needs --device cuda")
    if args.sharing and min(args.sharing) < 1:
        parser.error("--sharing takes run counts >= 1")
    if args.peak_size is not None and args.peak_size < 1:
        parser.error(f"--peak-size takes a matrix size >= 1, not {args.peak_size}")
    filter_warnings()  # the library notices a user cannot act on, as the CLI drops them
    drop_notices()
    # the timed runs are shorter than the default logging interval on purpose (the logging cadence of a real run)
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    if args.worker:
        sharing_worker(args)
        return
    if args.sharing:
        sharing(args)
        return
    if args.scaling:
        scaling(args)
        return
    warmup = max(args.warmup, 5) if args.cuda_graphs else args.warmup  # 3 eager iterations, then the recording
    reuse_memory = process_settings(args)
    peak_size = args.peak_size if args.peak_size is not None else 4096 if args.device == "cuda" else 2048
    peak = matmul_peak(args.device, peak_size)
    rows = []
    for name in args.models:
        plain: list[float] = []
        fw: list[float] = []
        bare: list[float | None] = []
        flops = 0.0
        peaks: list[float] = []  # the peak again before each repeat: this shared machine's speed drifts
        for _ in range(args.repeats):
            peaks.append(matmul_peak(args.device, peak_size))
            its, flops = time_plain(name, args.overrides, args.device, warmup, args.iters)
            plain.append(its)
            fw.append(
                time_framework(name, args.overrides, args.device, warmup, args.iters, args.compile, args.cuda_graphs)
            )
            if not args.compile:
                bare.append(time_bare(name, args.overrides, args.device, warmup, args.iters, args.cuda_graphs))
        _, model = build(name, args.overrides)
        images = sum(int(s["batch_size"]) for s in model.plan.game.streams.values())
        p, f = summary(plain), summary(fw)
        b = summary([v for v in bare if v is not None]) if bare and None not in bare else None
        rows.append(
            {
                "model": name,
                "plain_it_s": p,
                "framework_it_s": f,
                "speedup": f["median"] / p["median"],
                "bare_framework_step_it_s": b,
                "lightning_overhead": 1 - f["median"] / b["median"] if b else None,
                "images_per_iter": images,
                "flops_per_iter_plain": flops,
                "plain_flop_s": flops * p["median"],
                "peak_flop_s": statistics.median(peaks),
                "peaks_flop_s": peaks,
            }
        )
        extra = f", its step without Lightning {b['median']:.2f} it/s" if b else ""
        print(
            f"{name}: plain {p['median']:.2f} it/s, framework {f['median']:.2f} it/s, "
            f"x{f['median'] / p['median']:.2f}{extra}",
            flush=True,
        )
    meta = run_meta(
        args,
        warmup=warmup,
        reuse_cpu_memory=reuse_memory,
        compile=args.compile,
        matmul_peak_gflop_s=peak / 1e9,
        matmul_peak_size=peak_size,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (
        f"speed_{args.device}"
        + ("_compile" if args.compile else "")
        + ("_graphs" if args.cuda_graphs else "")
        + (f"_{args.tag}" if args.tag else "")
    )
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "| model | images/iter | plain it/s (min-max) | framework it/s (min-max) | framework / plain "
        "| framework images/s | framework step without Lightning it/s (Lightning overhead) | GFLOP/iter "
        "| plain GFLOP/s (% of peak) | framework GFLOP/s (% of peak) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, f, b = r["plain_it_s"], r["framework_it_s"], r["bare_framework_step_it_s"]
        bare_cell = f"{b['median']:.2f} ({100 * r['lightning_overhead']:.1f} %)" if b else "-"
        fw_flop_s = r["flops_per_iter_plain"] * f["median"]
        lines.append(
            f"| {r['model']} | {r['images_per_iter']} | {p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f}) "
            f"| {f['median']:.2f} ({f['min']:.2f}-{f['max']:.2f}) "
            f"| {r['speedup']:.2f}x | {f['median'] * r['images_per_iter']:.0f} | {bare_cell} "
            f"| {r['flops_per_iter_plain'] / 1e9:.2f} "
            f"| {r['plain_flop_s'] / 1e9:.1f} ({100 * r['plain_flop_s'] / r['peak_flop_s']:.0f} %) "
            f"| {fw_flop_s / 1e9:.1f} ({100 * fw_flop_s / r['peak_flop_s']:.0f} %) |"
        )
    table = "\n".join(lines)
    row_peaks = ", ".join(f"{r['model']} {r['peak_flop_s'] / 1e9:.0f}" for r in rows)
    stem.with_suffix(".md").write_text(
        f"# Training speed ({meta['device']}, {meta['torch_threads']} threads)\n\n"
        f"matmul peak ({peak_size}x{peak_size} fp32): {peak / 1e9:.0f} GFLOP/s at the start (% of peak: against the "
        f"median of the peaks measured before each repeat of the model: {row_peaks}); {meta['iters']} timed "
        f"iterations after {warmup} warm-up, "
        f"{args.repeats} repeats; options: {' '.join(args.overrides) or 'defaults'}"
        f"{', trainer.compile=true' if args.compile else ''}{', trainer.cuda_graphs=true' if args.cuda_graphs else ''}"
        f"; CPU memory reuse (plain loop too): {'on' if reuse_memory else 'off'}"
        f"\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
