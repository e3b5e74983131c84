"""Which precision the machine-dependent presets pick, from the CPU's flags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gan_lightning.hardware import cpu_has_native_bf16

HEADER = "processor\t: 0\nvendor_id\t: GenuineIntel\n"


@pytest.mark.parametrize(
    "flags,native",
    [
        ("fpu sse2 avx2 avx512f avx512bw", False),
        ("fpu sse2 avx512f avx512_bf16 avx512_vnni", True),
        ("fpu avx512f amx_bf16 amx_tile", True),
        ("fpu avx512f avx512_bf16x", False),  # whole flags only
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"{HEADER}flags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(info) is native


def test_missing_cpuinfo_means_no_native_bf16(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "absent") is False


def test_fast_preset_takes_its_precision_from_the_cpu():
    from conftest import compose_cfg
    from hydra.utils import instantiate

    from gan_lightning.hardware import cpu_precision
    from gan_lightning.nets.blocks import RandomAffine, RandomErase

    cfg = compose_cfg(["experiment=triple_gan_mnist100_fast"])
    assert cfg.trainer.precision == cpu_precision() == ("bf16-mixed" if cpu_has_native_bf16() else "32-true")
    model = instantiate(cfg.model)
    affine, erase = model.augment  # C's own view: the affine map, then cutout
    assert isinstance(affine, RandomAffine)
    assert isinstance(erase, RandomErase)
    assert (erase.size, erase.value) == (10, 0.0)
    teacher = model.teacher_augment  # the EMA teacher's view: the same affine map, its own module, no cutout
    assert isinstance(teacher, RandomAffine)
    assert teacher is not affine
    for aug in (affine, teacher):
        assert (aug.degrees, aug.translate, aug.scale) == (10, 2, (0.9, 1.1))
    for weights in (model.weights, model.pretrain_weights):
        assert weights["c_consistency"] > 0
        assert weights["c_confident"] > 0


@pytest.mark.parametrize(
    "extras,graphs,error",
    [
        ({"cuda_graphs": "auto"}, False, None),  # no CUDA GPU here: auto stays eager
        ({"cuda_graphs": False, "compile": True}, False, None),
        ({"cuda_graphs": "sometimes"}, False, "trainer.cuda_graphs='sometimes' is not one of [auto, true, false]"),
        ({"cuda_graphs": True}, False, "trainer.cuda_graphs=true needs a CUDA GPU"),
        (
            {"cuda_graphs": False, "compile": "yes"},
            False,
            "trainer.compile='yes': expects true, false or torch.compile's options",
        ),
        ({"cuda_graphs": False, "reuse_cpu_memory": "auto"}, False, None),
        ({"cuda_graphs": False, "reuse_cpu_memory": False}, False, None),
        (
            {"cuda_graphs": False, "reuse_cpu_memory": "always"},
            False,
            "trainer.reuse_cpu_memory='always' is not one of [auto, true, false]",
        ),
        ({"cuda_graphs": False, "matmul_precision": "medium"}, False, None),
        (
            {"cuda_graphs": False, "matmul_precision": "tf32"},
            False,
            "trainer.matmul_precision='tf32' is not one of [highest, high, medium]",
        ),
    ],
)
def test_accelerate_takes_its_keys_out_of_the_trainer_config_and_applies_them(extras, graphs, error):
    import torch
    from conftest import compose_cfg
    from hydra.utils import instantiate

    from gan_lightning.acceleration import accelerate
    from gan_lightning.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("checks the CPU decisions")
    model = instantiate(compose_cfg(["model=triple_gan"]).model)
    if error:
        with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
            accelerate(model, {"accelerator": "cpu", **extras})
        return
    try:
        rest = accelerate(model, {"accelerator": "cpu", "max_epochs": 3, **extras})
        assert torch.get_float32_matmul_precision() == extras.get("matmul_precision", "highest")
    finally:
        torch.set_float32_matmul_precision("highest")  # process-wide: the next test starts from the default
    assert rest == {"accelerator": "cpu", "max_epochs": 3}  # what the Trainer takes
    assert getattr(model, "iteration_recorder", None) is None  # eager steps
    compiled = [
        n for n in ("classifier", "generator", "discriminator") if getattr(model, n)._compiled_call_impl is not None
    ]
    assert compiled == (["classifier", "generator", "discriminator"] if extras.get("compile") else [])


FAULTS = """
import ctypes, ctypes.util, resource, statistics, sys, torch
from gan_lightning.acceleration import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, reuse_cpu_memory
from gan_lightning.nets.triple_gan import ConvClassifier
if sys.argv[1] == "on":
    assert reuse_cpu_memory()
else:  # glibc's documented start values, held fixed: blocks over 128 KiB go back to the system when freed (its
    # default raises them as the run goes, so how much a run without reuse faults varies from process to process)
    mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    assert mallopt(M_MMAP_THRESHOLD, 128 << 10) and mallopt(M_TRIM_THRESHOLD, 128 << 10)
torch.set_num_threads(1)
c = ConvClassifier((1, 28, 28))
opt = torch.optim.Adam(c.parameters())
x, y = torch.rand(100, 1, 28, 28), torch.randint(10, (100,))
faults = []
for _ in range(18):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad()
    torch.nn.functional.cross_entropy(c(x), y).backward()
    opt.step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
faults = faults[3:]  # after the first steps, in which the heap grows to the step's working size
print(statistics.mean(faults), statistics.median(faults))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reused_cpu_memory_spares_the_page_faults_of_each_training_step():
    """trainer.reuse_cpu_memory: a training step's new tensors land on pages the process already has."""
    faults = {
        mode: [
            float(v)
            for v in subprocess.run(
                [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
            ).stdout.split()
        ]
        for mode in ("off", "on")
    }
    (mean_off, _), (mean_on, median_on) = faults["off"], faults["on"]  # page faults per step of a classifier's training
    assert mean_off > 1000, faults  # freed activations go back to the system, new ones fault pages in
    assert median_on < 10, faults  # reused: most steps fault no page in
    assert mean_on < mean_off / 5, faults


def test_iteration_graph_keeps_one_record_per_kind_of_iteration(monkeypatch):
    """The bookkeeping of ``IterationGraph`` (CUDA's stream and graph calls replaced by stand-ins, so it runs here):
    each kind warms up eagerly, is recorded once and then only replayed with the new batch copied into its fixed
    inputs; beyond ``keep`` kinds the least recently used record is dropped and a returning kind starts over."""
    import contextlib
    from types import SimpleNamespace

    import torch

    from gan_lightning.acceleration import IterationGraph

    replays = []

    class Graph:
        def replay(self) -> None:
            replays.append(self)

    stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    runs: list[str] = []

    def step(kind):
        def fn(batch):
            runs.append(kind)
            return {"twice": batch["x"][0] * 2}

        return fn

    graph = IterationGraph(warmup=2, keep=2)
    outputs = []
    for i, kind in enumerate("ABABABAB"):
        outputs.append(graph(kind, step(kind), {"x": (torch.full((3,), float(i)),)}))
    assert runs == list("ABAB") + list("AB")  # two eager calls each, then one call each while recording
    assert graph.captures == 2
    assert len(replays) == 4
    assert [float(o["twice"][0]) for o in outputs[:4]] == [0.0, 2.0, 4.0, 6.0]  # eager results of their own batches
    assert outputs[4] is outputs[6]
    assert outputs[5] is outputs[7]
    assert outputs[4] is not outputs[5]
    assert float(graph.records["B"].inputs["x"][0][0]) == 7.0  # the latest B batch copied into B's fixed input
    graph("C", step("C"), {"x": (torch.zeros(3),)})  # a third kind: A, the least recently used, is dropped
    assert list(graph.records) == ["B", "C"]
    graph("A", step("A"), {"x": (torch.zeros(3),)})
    assert runs[-2:] == ["C", "A"]
    assert graph.records["A"].calls == 1
    assert graph.records["A"].graph is None
    with pytest.raises(ValueError, match="at least one record"):
        IterationGraph(keep=0)


def _stand_in_cuda(monkeypatch, replay=None, capture_error=None, state=()):
    """CUDA's stream, graph and random-state calls replaced by stand-ins: the graph's replay runs ``replay``; a capture
    leaves the tensors of ``state`` as they were (a recording runs nothing)."""
    import contextlib
    from types import SimpleNamespace

    import torch

    class Graph:
        def replay(self) -> None:
            if replay is not None:
                replay()

    @contextlib.contextmanager
    def capture(graph):
        if capture_error is not None:
            raise capture_error
        saved = [t.clone() for t in state]
        yield
        for t, before in zip(state, saved):
            t.copy_(before)

    stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.get_rng_state())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: torch.set_rng_state(state))


def _sgd_step(weight):
    """An iteration: the loss of ``weight`` on the batch, then one SGD step on it (the state it changes)."""
    import torch

    def fn(batch):
        loss = (weight * batch["x"][0]).sum()
        with torch.no_grad():
            weight.sub_(0.1 * batch["x"][0])
        return {"loss": loss.detach()}

    return fn


def test_a_guarded_recording_that_fails_goes_on_eagerly_with_one_line(monkeypatch, caplog):
    import logging

    import torch

    from gan_lightning.acceleration import IterationGraph

    _stand_in_cuda(monkeypatch, capture_error=RuntimeError("operation not permitted when stream is capturing\ndetails"))
    weight = torch.ones(3)
    graph = IterationGraph(warmup=1, guard=lambda: [weight])
    batch = {"x": (torch.ones(3),)}
    with caplog.at_level(logging.INFO):
        losses = [float(graph("k", _sgd_step(weight), batch)["loss"]) for _ in range(2)]
    assert losses == pytest.approx([3.0, 2.7])  # both steps ran eagerly, the second on the first's weights
    assert torch.allclose(weight, torch.full((3,), 0.8))
    assert graph.failed
    assert "recording failed (RuntimeError: operation not permitted when stream is capturing)" in graph.failed
    lines = [r.getMessage() for r in caplog.records if "CUDA graphs off" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "it goes on without them" in lines[0]
    unguarded = IterationGraph(warmup=1)  # trainer.cuda_graphs=true: the user asked for graphs, the error is theirs
    unguarded("k", _sgd_step(weight), batch)
    with pytest.raises(RuntimeError, match="operation not permitted"):
        unguarded("k", _sgd_step(weight), batch)


@pytest.mark.parametrize("drift,falls_back", [(0.0, False), (5e-4, False), (0.05, True)])
def test_a_guarded_first_replay_is_checked_against_the_eager_step(monkeypatch, caplog, drift, falls_back):
    """The first replay must give the eager step's losses (rtol 1e-3) from the same inputs and state; beyond that the
    run keeps the eager step's state and losses and goes on without graphs."""
    import logging

    import torch

    from gan_lightning.acceleration import IterationGraph

    weight = torch.ones(3)
    outputs: dict = {}

    def replay():  # what a recorded iteration would do, off by ``drift`` (a library choosing another algorithm)
        outputs["loss"].copy_((weight * record_inputs()["x"][0]).sum() * (1 + drift))
        weight.sub_(0.1 * record_inputs()["x"][0] * (1 + drift))

    _stand_in_cuda(monkeypatch, replay=replay, state=[weight])
    graph = IterationGraph(warmup=1, guard=lambda: [weight])
    record_inputs = lambda: graph.records["k"].inputs
    fn = _sgd_step(weight)

    def recorded(batch):
        out = fn(batch)
        outputs["loss"] = out["loss"].clone()
        return outputs

    batch = {"x": (torch.ones(3),)}
    graph("k", recorded, batch)  # warm-up, eager: weight 0.9
    with caplog.at_level(logging.INFO):
        first = float(graph("k", recorded, {"x": (torch.full((3,), 2.0),)})["loss"])
    # the eager step from weight 0.9 on x = 2: loss 5.4, weight 0.7 afterwards
    assert first == pytest.approx(5.4 if falls_back else 5.4 * (1 + drift))
    assert torch.allclose(weight, torch.full((3,), 0.7 if falls_back else 0.9 - 0.2 * (1 + drift)))
    assert bool(graph.failed) == falls_back
    assert (
        any("CUDA graphs off for this run: its first replay gave loss=" in r.getMessage() for r in caplog.records)
        == falls_back
    )


@pytest.mark.parametrize("setting,guarded", [("auto", True), (True, False)])
def test_only_automatically_chosen_graphs_are_guarded(monkeypatch, setting, guarded):
    import torch
    from conftest import compose_cfg
    from hydra.utils import instantiate

    from gan_lightning.acceleration import accelerate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine: only the choice is tested
    model = instantiate(compose_cfg(["model=triple_gan"]).model, _convert_="all")
    accelerate(model, {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed", "cuda_graphs": setting})
    assert model.iteration_recorder is not None
    assert (model.iteration_recorder.graph.guard is not None) is guarded
