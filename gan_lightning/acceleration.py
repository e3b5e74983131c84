"""Running a game faster: ``trainer.cuda_graphs``, ``trainer.compile`` and ``trainer.reuse_cpu_memory`` without changing
what it computes, ``trainer.matmul_precision`` by computing float32 matrix products in TF32 or bf16 inside.

``accelerate(model, trainer_cfg)`` is the one entry point: it takes these keys out of the trainer's config, decides
(``auto``: CUDA graphs wherever they work and have been measured to pay, CPU memory reuse wherever the C library is
glibc) and refuses impossible combinations with one line.

CPU memory reuse: glibc's malloc hands every block over 128 KiB-32 MiB back to the operating system when it is
freed, so each new activation or gradient of a CPU training step starts on fresh pages, one page fault per 4 KiB.
``reuse_cpu_memory`` raises its thresholds (``mallopt``) so freed blocks stay in the process for the next step's
tensors; the process keeps its peak memory instead of returning it between steps.

Whole-iteration CUDA graphs: a game's iteration (every forward, backward, optimizer step and the EMA update)
is recorded once and replayed, so one iteration costs one launch instead of hundreds of small kernels.

The recorded function must not read values back to the host, must take its inputs from the given tensors, and
must keep its Python control flow fixed for a given ``key``; a new key (e.g. a loss term switched on at some
epoch) records a new graph. Random numbers drawn inside (latent codes, dropout, noise) follow the same stream as
eager execution, since PyTorch advances the CUDA generator's offset on each replay.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from gan_lightning.capabilities import RecordsCudaGraphs
from gan_lightning.errors import ConfigError
from gan_lightning.lightning_compat import count_optimizer_step

Batch = Mapping[str, tuple[torch.Tensor, ...]]
# how close a recorded iteration's first replay must come to the eager step on the same inputs (outputs: the losses);
# the same kernels run in both, so only a different reduction order (a library choosing another algorithm) may show
GUARD_RTOL, GUARD_ATOL = 1e-3, 1e-5


def make_capturable(optimizers) -> None:
    """Switch optimizers to their graph-safe form: ``capturable`` steps, learning rates and step counts as
    device tensors (schedulers then change the learning rate in place, which a replayed graph sees)."""
    for opt in optimizers:
        if all(isinstance(group["lr"], torch.Tensor) for group in opt.param_groups):
            continue  # done already
        for group in opt.param_groups:
            device = group["params"][0].device
            if "capturable" in group:
                group["capturable"] = True
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=device)
            for p in group["params"]:
                state = opt.state.get(p, {})
                if isinstance(state.get("step"), torch.Tensor) and state["step"].device != p.device:
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


class IterationGraph:
    """Runs ``fn(batch)`` eagerly for ``warmup`` calls (on a side stream, as graph capture requires), records
    it on the next call and replays the record from then on, with the batch copied into fixed input tensors.
    Each ``key`` (a kind of iteration: e.g. a D-only batch of a 5:1 GAN, or the game after pre-training) has its own
    record; the ``keep`` most recently used kinds are kept, an older one is dropped (and warmed up and recorded again
    if it comes back). Returns ``fn``'s output tensors (the graph's own, overwritten by its next replay)."""

    def __init__(
        self,
        warmup: int = 3,
        keep: int = 1,
        guard: Callable[[], list[torch.Tensor]] | None = None,
        rtol: float = GUARD_RTOL,
        atol: float = GUARD_ATOL,
    ) -> None:
        if warmup < 1:
            raise ValueError("a CUDA graph needs at least one eager warm-up call before it is recorded")
        if keep < 1:
            raise ValueError("an iteration graph keeps at least one record")
        self.warmup, self.keep = warmup, keep
        self.records: dict[Hashable, _Record] = {}  # least recently used first
        self.captures = 0
        # guarded (trainer.cuda_graphs=auto): ``guard`` gives the tensors an iteration changes (parameters, buffers,
        # optimizer states); a failed recording, or a first replay whose outputs differ from an eager call on the same
        # inputs and state beyond rtol/atol, turns recording off (``failed`` says why) instead of ending the run
        self.guard, self.rtol, self.atol = guard, rtol, atol
        self.failed: str | None = None

    def reset(self) -> None:
        self.records.clear()

    def __call__(self, key: Hashable, fn: Callable[[Batch], dict], batch: Batch) -> dict:
        record = self.records.pop(key, None) or _Record()
        self.records[key] = record  # now the most recently used
        while len(self.records) > self.keep:
            self.records.pop(next(iter(self.records)))
        record.calls += 1
        if record.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = fn(batch)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if record.graph is None:
            record.inputs = {name: tuple(t.clone() for t in tensors) for name, tensors in batch.items()}
            record.graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(record.graph):
                    record.outputs = fn(record.inputs)
            except Exception as err:
                if self.guard is None:
                    raise
                self._fall_back(
                    f"recording failed ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
                )
                return fn(batch)
            self.captures += 1
            if self.guard is not None:
                return self._checked_first_replay(record, fn, batch)
        else:
            self._copy_in(record, batch)
        record.graph.replay()
        return record.outputs

    @staticmethod
    def _copy_in(record: _Record, batch: Batch) -> None:
        for name, tensors in batch.items():
            for static, t in zip(record.inputs[name], tensors):
                static.copy_(t, non_blocking=True)

    def _checked_first_replay(self, record: _Record, fn: Callable[[Batch], dict], batch: Batch) -> dict:
        """The first replay, checked: an eager call on the same inputs, state and random stream gives the reference;
        the state is put back and the record replayed; outputs beyond ``rtol``/``atol`` of the eager ones turn
        recording off and keep the eager call's state and outputs."""
        assert self.guard is not None
        assert record.graph is not None
        state = self.guard()
        before, rng = [t.detach().clone() for t in state], torch.cuda.get_rng_state()
        eager = {k: v.detach().clone() for k, v in fn(batch).items()}
        after_eager = [t.detach().clone() for t in state]
        with torch.no_grad():
            for t, saved in zip(state, before):
                t.copy_(saved)
        torch.cuda.set_rng_state(rng)
        self._copy_in(record, batch)
        record.graph.replay()
        for name, value in eager.items():
            replayed = record.outputs[name].detach().float()
            if not torch.allclose(replayed, value.float(), rtol=self.rtol, atol=self.atol, equal_nan=True):
                with torch.no_grad():
                    for t, saved in zip(state, after_eager):
                        t.copy_(saved)
                self._fall_back(
                    f"its first replay gave {name}={replayed.flatten()[0].item():.6g} where the eager step gives "
                    f"{value.float().flatten()[0].item():.6g} (beyond rtol {self.rtol:g}, atol {self.atol:g})"
                )
                return eager
        return record.outputs

    def _fall_back(self, reason: str) -> None:
        self.failed = reason
        self.records.clear()
        rank_zero_info(
            f"CUDA graphs off for this run: {reason}; it goes on without them "
            "(trainer.cuda_graphs=false skips the attempt)"
        )


class _Record:
    """One kind of iteration in an ``IterationGraph``: its eager calls so far, then its graph and fixed tensors."""

    def __init__(self) -> None:
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: dict = {}
        self.outputs: dict = {}


class IterationRecorder:
    """``trainer.cuda_graphs``: a game's ``iteration(batch, opt, kind)`` (every step of one training iteration and the
    EMA update), recorded as a CUDA graph per kind of iteration and replayed. Installed in place of the game's
    ``iteration`` (``record_iterations``), so the game's ``training_step`` reads the same either way.

    Around each recorded iteration it does what Lightning's optimizer wrappers would have done around the raw steps:
    the kind (``game.iteration_kind(opt)``: the schedule's host-side decisions for this batch) is taken before the
    graph, the optimizers are switched to their graph-safe form, Lightning's step count advances for the optimizers
    the kind steps, and their losses are checked (both noted by ``GameModule.step`` while the kind ran eagerly: the
    optimizer, its network and the step scalar that holds its loss); on logging steps the step scalars are copied out
    of the graph (its next replay overwrites them). ``guarded`` (``auto``): a failed recording, or a first replay that
    differs from the eager step, turns recording off for the run with one line."""

    def __init__(self, game: Any, warmup: int = 3, guarded: bool = False) -> None:
        self.game, self.eager = game, game.iteration
        self.graph: IterationGraph | None = IterationGraph(
            warmup, keep=game.GRAPH_KINDS, guard=self.iteration_state if guarded else None
        )
        self.stepped: dict[Hashable, list[tuple[str, str, str]]] = {}  # kind: (optimizer, network, its loss's scalar)

    def iteration_state(self) -> list[torch.Tensor]:
        """Every tensor an iteration changes: the game's parameters and buffers and its optimizers' states."""
        game = self.game
        states = [t for o in game.optimizers() for s in o.optimizer.state.values() for t in s.values()]
        return [*game.parameters(), *game.buffers(), *(t for t in states if isinstance(t, torch.Tensor))]

    def __call__(self, batch: Batch, opt: Any, kind: Hashable | None = None) -> dict:
        game = self.game
        if self.graph is None or game.device.type != "cuda":
            return self.eager(batch, opt, kind)
        kind = game.iteration_kind(opt) if kind is None else kind
        raw = type(opt)((name, getattr(o, "optimizer", o)) for name, o in opt.items())
        make_capturable(raw.values())
        names = {id(o): name for name, o in raw.items()}

        def run(inputs: Batch) -> dict:
            game.bare_stepped = []
            try:
                logs = self.eager(inputs, raw, kind)
                scalar_of = {v.data_ptr(): k for k, v in logs.items()}  # a loss and its detached scalar share memory
                stepped = [
                    (names[id(o)], net, scalar_of.get(loss.data_ptr(), "")) for o, net, loss in game.bare_stepped
                ]
            finally:
                game.bare_stepped = None
            self.stepped[kind] = stepped
            return logs

        game.bare_steps = True
        try:
            logs = self.graph(kind, run, batch)
        finally:
            game.bare_steps = False
        if self.graph.failed:  # guarded recording gave up (one line said why): eager iterations from the next batch
            self.graph = None
        for name, _, _ in self.stepped.get(kind, []):
            count_optimizer_step(opt[name])
        game.check_finite({net: logs[scalar] for _, net, scalar in self.stepped.get(kind, []) if scalar in logs})
        if game.logging_step():
            logs = dict(zip(logs, torch.stack(list(logs.values())).unbind()))
        return logs


def record_iterations(game: Any, warmup: int = 3, guarded: bool = False) -> IterationRecorder:
    """Record ``game``'s iterations as CUDA graphs from now on (``IterationRecorder``); the recorder is also
    ``game.iteration_recorder``."""
    recorder = IterationRecorder(game, warmup, guarded)
    game.iteration = recorder
    game.iteration_recorder = recorder
    return recorder


def accelerate(model: nn.Module, trainer_cfg: dict) -> dict:
    """Apply ``trainer.cuda_graphs`` (auto | true | false) and ``trainer.compile`` (false | true | torch.compile
    options) to ``model``; returns the rest of ``trainer_cfg``, the Trainer's own arguments."""
    trainer_cfg = dict(trainer_cfg)
    apply_process_settings(trainer_cfg)
    compile_cfg = trainer_cfg.pop("compile", False)
    cuda_graphs = trainer_cfg.pop("cuda_graphs", False)
    if not isinstance(compile_cfg, (bool, dict)):
        raise ConfigError(
            f"trainer.compile={compile_cfg!r}: expects true, false or torch.compile's options, "
            "e.g. {mode: max-autotune}"
        )
    chosen_automatically = cuda_graphs == "auto"
    if cuda_graphs == "auto":  # on wherever it works and is known to pay: such a game alone on one CUDA GPU
        cuda_graphs = cuda_graphs_problem(model, trainer_cfg, compile_cfg) is None and bool(
            isinstance(model, RecordsCudaGraphs) and model.CUDA_GRAPHS_AUTO
        )
    elif cuda_graphs not in (True, False):
        raise ConfigError(f"trainer.cuda_graphs={cuda_graphs!r} is not one of [auto, true, false]")
    if cuda_graphs:
        problem = cuda_graphs_problem(model, trainer_cfg, compile_cfg)
        if problem:
            raise ConfigError(f"trainer.cuda_graphs=true {problem}")
        record_iterations(model, guarded=chosen_automatically)  # auto: a failed recording falls back to eager steps
    if compile_cfg:
        compile_networks(model, **(compile_cfg if isinstance(compile_cfg, dict) else {}))
    return trainer_cfg


def apply_process_settings(trainer_cfg: dict) -> bool:
    """Take ``trainer.matmul_precision`` and ``trainer.reuse_cpu_memory`` out of ``trainer_cfg`` and apply them to this
    process (a run, or a benchmark's plain loop and framework run alike); whether freed CPU memory is now kept for
    reuse."""
    apply_matmul_precision(trainer_cfg.pop("matmul_precision", "highest"))
    return apply_reuse_cpu_memory(trainer_cfg.pop("reuse_cpu_memory", False))


MATMUL_PRECISIONS = ("highest", "high", "medium")


def apply_matmul_precision(setting: Any) -> None:
    """Apply ``trainer.matmul_precision``: how float32 matrix products compute inside
    (``torch.set_float32_matmul_precision``). ``highest``: float32; ``high``: TF32 tensor cores on CUDA GPUs that have
    them; ``medium``: bf16 inside, on CUDA GPUs and on CPUs with bf16 dot products (oneDNN). Inputs, outputs and
    everything else stay float32. One line for another value."""
    if setting not in MATMUL_PRECISIONS:
        raise ConfigError(f"trainer.matmul_precision={setting!r} is not one of [{', '.join(MATMUL_PRECISIONS)}]")
    torch.set_float32_matmul_precision(setting)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest on 64-bit systems: blocks above it are still mapped and unmapped
TRIM_THRESHOLD = 1 << 30


def apply_reuse_cpu_memory(setting: Any) -> bool:
    """Apply ``trainer.reuse_cpu_memory`` (auto | true | false); whether freed memory is now kept for reuse. One line
    for a value outside those, or for ``true`` where the C library cannot do it."""
    if setting not in ("auto", True, False):
        raise ConfigError(f"trainer.reuse_cpu_memory={setting!r} is not one of [auto, true, false]")
    applied = setting in ("auto", True) and reuse_cpu_memory()
    if setting is True and not applied:
        raise ConfigError(
            "trainer.reuse_cpu_memory=true needs glibc's malloc (Linux) and this C library has no mallopt; "
            "use auto or false"
        )
    return applied


def reuse_cpu_memory() -> bool:
    """Keep freed blocks of up to 32 MiB in the process for reuse, and up to 1 GiB of free memory at the top of the
    heap (glibc ``mallopt``); the same every call. False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def cuda_graphs_problem(model: nn.Module, trainer_cfg: dict, compile_cfg: Any = False) -> str | None:
    """Why CUDA graphs cannot run this game with these trainer settings (None: they can). They need one CUDA GPU, a
    precision without a gradient scaler, and a game that records its steps."""
    precision = str(trainer_cfg.get("precision"))
    if not isinstance(model, RecordsCudaGraphs):
        return (
            "is supported by the games (model=triple_gan, gan, dcgan, cgan, cdcgan, maxout_gan), "
            f"not by {type(model).__name__}"
        )
    if trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available():
        return "needs a CUDA GPU (trainer=gpu) and none is visible; without one add trainer.cuda_graphs=false"
    if precision in ("16-mixed", "16", "16-true"):
        return (
            f"does not work with precision={precision} (its gradient scaler reads values back); "
            "use bf16-mixed or 32-true"
        )
    if trainer_cfg.get("devices", 1) not in (1, "1", [0]) or "ddp" in str(trainer_cfg.get("strategy", "")):
        return "runs on one GPU (trainer.devices=1, no DDP)"
    if compile_cfg:
        return "and trainer.compile=true exclude each other; choose one"
    return None


def compile_networks(model: Any, **options: Any) -> list[nn.Module]:
    """``torch.compile`` each network the game optimizes, in place (``nn.Module.compile``: parameter names and
    checkpoints stay the same); returns them. Options go to ``torch.compile`` (e.g. mode)."""
    networks = list({id(m): m for m in model.optimized().values()}.values())
    for network in networks:
        network.compile(**options)
    return networks
