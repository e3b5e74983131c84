"""The speed options change how a step is computed, not what it computes: losses on the same seed match the
plain path (NCHW layout, eager mode) up to float rounding."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import compose_cfg, needs_mnist
from hydra.utils import instantiate

from gan_lightning.acceleration import IterationGraph, make_capturable
from gan_lightning.tasks.train import build

pytestmark = [needs_mnist, pytest.mark.slow]  # trainings of several steps, compiled runs


class _Losses(L.Callback):
    def __init__(self, keys) -> None:
        self.keys, self.values = keys, []

    def on_train_batch_end(self, trainer, *args) -> None:
        self.values.append(
            [float(trainer.callback_metrics.get(k, float("nan"))) for k in self.keys]
        )  # nan: not logged yet


# a few batches, every step's scalars logged, no logger or callbacks: the runs these tests compare step by step
STEPWISE = ["trainer=debug", "trainer.log_every_n_steps=1", "logger=none", "callbacks=none"]


def _losses(overrides: list[str], keys: list[str], tmp_path) -> torch.Tensor:
    cfg = compose_cfg([*STEPWISE, "trainer.max_epochs=1", *overrides], output_dir=tmp_path)
    datamodule, model, trainer = build(cfg)
    record = _Losses(keys)
    trainer.callbacks.append(record)
    trainer.fit(model, datamodule=datamodule)
    return torch.tensor(record.values)


@pytest.mark.parametrize(
    "model,keys",
    [
        (["model=dcgan"], ["train/d/loss", "train/g/loss"]),
        # dropout on (its masks are drawn in logical order: the same in NHWC and NCHW); no hard labels of the untrained
        # C (integrated C pairs, no unlabeled real pairs): rounding can flip a near-tie argmax
        (
            [
                "model=triple_gan",
                "model.schedule.pretrain_epochs=0",
                "model.batch_sizes.d_unlabeled=40",
                "model.objective=integrate",
                "model.fidelity.d_unlabeled_real=false",
            ],
            ["train/d/loss", "train/g/loss", "train/c/loss"],
        ),
    ],
)
def test_channels_last_gives_the_losses_of_the_plain_layout(model, keys, tmp_path):
    fast = _losses([*model, "model.channels_last=true"], keys, tmp_path / "a")
    plain = _losses([*model, "model.channels_last=false"], keys, tmp_path / "b")
    assert fast.shape == (4, len(keys))
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "model,optimizers,keys",
    [
        (["model=gan"], ["optimizers.g"], ["train/d/loss", "train/g/loss"]),  # optimizers.d is optimizers.g
        (
            [
                "model=triple_gan",
                "model.schedule.pretrain_epochs=1",
                "model.epochs=1",
                "trainer.max_epochs=2",
                "model.batch_sizes.d_unlabeled=40",
                "model.objective=integrate",
                "model.fidelity.d_unlabeled_real=false",
            ],
            ["optimizers.c", "optimizers.d", "optimizers.g", "optimizers.pretrain"],
            ["pretrain/c/loss", "train/d/loss", "train/g/loss", "train/c/loss"],
        ),
    ],
)
def test_fused_adam_gives_the_losses_of_the_for_loop_adam(model, optimizers, keys, tmp_path):
    fused = _losses([*model, *[f"model.{o}.fused=true" for o in optimizers]], keys, tmp_path / "a")
    loop = _losses([*model, *[f"model.{o}.fused=false" for o in optimizers]], keys, tmp_path / "b")
    assert fused.shape[0] >= 2
    assert torch.isfinite(fused[-1]).all()
    torch.testing.assert_close(fused, loop, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("model", [["model=gan"], ["model=cgan"]])
def test_joint_discriminator_forward_gives_the_losses_of_two_forwards(model, tmp_path):
    # without dropout D is deterministic: one forward over real and fake scores each image as two forwards do
    overrides = [*model, "model.discriminator.dropout=0"]
    keys = ["train/d/loss", "train/d/real", "train/d/fake", "train/g/loss"]
    joint = _losses([*overrides, "model.joint_d_forward=true"], keys, tmp_path / "a")
    apart = _losses([*overrides, "model.joint_d_forward=false"], keys, tmp_path / "b")
    assert joint.shape == (4, len(keys))
    torch.testing.assert_close(joint, apart, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", [["model=dcgan"], ["model=cgan", "model.d_steps=2"]])
def test_reused_generator_forward_gives_the_losses_of_a_fresh_one(model, tmp_path):
    # D's dropout draws in the same order either way (G draws nothing): the losses match with dropout on
    keys = ["train/d/loss", "train/d/real", "train/d/fake", "train/g/loss"]
    runs = {}
    for reuse in (True, False):
        overrides = [*STEPWISE, "trainer.max_epochs=1", *model, f"model.reuse_g_forward={str(reuse).lower()}"]
        cfg = compose_cfg(overrides, output_dir=tmp_path / str(reuse))
        datamodule, game, trainer = build(cfg)
        record = _Losses(keys)
        trainer.callbacks.append(record)
        trainer.fit(game, datamodule=datamodule)
        bn = [m for m in game.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        runs[reuse] = torch.tensor(record.values), [int(m.num_batches_tracked) for m in bn]
    (reused, tracked_reused), (fresh, tracked_fresh) = runs[True], runs[False]
    assert reused.shape == (4, len(keys))
    torch.testing.assert_close(reused, fresh, rtol=1e-5, atol=1e-6, equal_nan=True)
    if "model=dcgan" in model:  # G's batch-norm statistics: one update per batch instead of two
        assert tracked_reused, (tracked_reused, tracked_fresh)
        assert all(r == 4 and f == 8 for r, f in zip(tracked_reused, tracked_fresh)), (tracked_reused, tracked_fresh)


def test_a_discriminator_with_batch_norm_keeps_two_forwards():
    model = instantiate(compose_cfg(["model=dcgan"]).model)
    assert not model.joint_d
    assert instantiate(compose_cfg(["model=gan"]).model).joint_d


def test_torch_compile_gives_the_losses_of_eager_mode(tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)  # compiled random ops draw from the eager RNG
    keys = ["train/d/loss", "train/g/loss"]
    compiled = _losses(["model=gan", "trainer.compile=true"], keys, tmp_path / "a")
    eager = _losses(["model=gan", "trainer.compile=false"], keys, tmp_path / "b")
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


TRIPLE = [
    "model=triple_gan",
    "model.generator_batch=20",
    "model.batch_sizes.c_labeled=20",
    "model.batch_sizes.c_unlabeled=20",
    "model.batch_sizes.d_labeled=2",
    "model.batch_sizes.d_unlabeled=20",
    "model.pretrain_batch_sizes.c_unlabeled=40",
]
GAME_KEYS = ["train/d/loss", "train/g/loss", "train/c/loss", "train/c/adv"]


def _bare_losses(overrides: list[str], keys: list[str], tmp_path, steps: int = 4) -> torch.Tensor:
    """The losses of ``model.iteration`` in a plain loop without Lightning, with graph-safe steps (``bare_steps``:
    the optimizers' own steps, requires_grad toggling, the EMA update without host reads)."""
    cfg = compose_cfg(["trainer=debug", "logger=none", "callbacks=none", *overrides], output_dir=tmp_path)
    datamodule, model, _ = build(cfg)
    model.train()
    model.setup("fit")
    optimizers = model.bare_optimizers()
    model.bare_steps = True
    values = []
    for batch, _ in zip(datamodule.train_dataloader(), range(steps)):
        logs = model.iteration(model.on_after_batch_transfer(batch, 0), optimizers)
        values.append([float(logs[k]) for k in keys])
    return torch.tensor(values)


@pytest.mark.parametrize(
    "overrides,keys",
    [
        (
            [*TRIPLE, "model.schedule.pretrain_epochs=0", "model.schedule.pseudo_label_epoch=1"],
            [*GAME_KEYS, "train/c/pseudo"],
        ),
        (["model=dcgan"], ["train/d/loss", "train/d/D(x)", "train/d/D(G(z))", "train/g/loss"]),
        (["model=cgan"], ["train/d/loss", "train/d/real", "train/g/loss"]),
    ],
)
def test_graph_safe_iteration_without_lightning_gives_the_lightning_losses(tmp_path, overrides, keys):
    bare = _bare_losses(overrides, keys, tmp_path / "a")
    lightning = _losses(overrides, keys, tmp_path / "b")
    assert bare.shape == (4, len(keys))
    assert bool(torch.isfinite(bare).all())
    torch.testing.assert_close(bare, lightning, rtol=1e-5, atol=1e-6)


def test_graph_safe_ema_update_equals_the_averaged_model_update():
    cfg = compose_cfg([*TRIPLE, "model.ema_decay=0.9"])
    models = [instantiate_model(cfg), instantiate_model(cfg)]
    models[1].load_state_dict(models[0].state_dict())
    models[1].bare_steps = True
    for n in range(15):
        for model in models:
            with torch.no_grad():
                for p in model.classifier.parameters():
                    p.add_(0.01 * (n + 1))
                for b in model.classifier.buffers():
                    b.add_(1)
            model.update_ema()
    for a, b in zip(models[0].ema.state_dict().values(), models[1].ema.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert int(models[1].ema.n_averaged) == 15


def instantiate_model(cfg):
    from hydra.utils import instantiate

    return instantiate(cfg.model, _convert_="all")


def test_bf16_mixed_gives_the_fp32_losses_to_bf16_rounding(tmp_path):
    """bf16-mixed (the CPU preset's precision) changes the arithmetic, not the game: C's terms of the first step
    agree with full precision to bf16's 8-bit mantissa; every later loss stays finite. (D's terms are not
    compared: D's noise is drawn in bf16 there, a different sample, and C's hard labels are near-ties at
    initialisation, which rounding flips.)"""
    overrides = [*TRIPLE, "model.schedule.pretrain_epochs=0", "model.schedule.pseudo_label_epoch=1"]
    keys = ["train/c/supervised", "train/c/entropy", "train/c/balance", "train/c/pseudo", *GAME_KEYS]
    bf16 = _losses([*overrides, "trainer.precision=bf16-mixed"], keys, tmp_path / "a")
    fp32 = _losses([*overrides, "trainer.precision=32-true"], keys, tmp_path / "b")
    assert not torch.equal(bf16, fp32)
    assert bool(torch.isfinite(bf16).all())
    torch.testing.assert_close(bf16[0, :4], fp32[0, :4], rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("setting", ["medium", "high"])
def test_lower_matmul_precision_keeps_the_losses_within_bf16_rounding(tmp_path, setting):
    """trainer.matmul_precision=medium (bf16 inside float32 matrix products where the CPU or GPU has bf16 dot products)
    or high (TF32 on CUDA GPUs; float32 on a CPU): the MLP GAN's losses over four steps stay within bf16's rounding of
    float32's (the stated tolerance: rtol 2e-2, atol 2e-3), and the setting is undone for the next run."""
    keys = ["train/d/loss", "train/d/D(x)", "train/g/loss"]
    try:
        lower = _losses(["model=gan", f"trainer.matmul_precision={setting}"], keys, tmp_path / "a")
        assert torch.get_float32_matmul_precision() == setting
    finally:
        torch.set_float32_matmul_precision("highest")
    full = _losses(["model=gan"], keys, tmp_path / "b")
    assert lower.shape == full.shape == (4, len(keys))
    assert bool(torch.isfinite(lower).all())
    torch.testing.assert_close(lower, full, rtol=2e-2, atol=2e-3)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


@needs_cuda
def test_replayed_cuda_graph_computes_the_eager_iteration(tmp_path):
    """The same iteration, optimizers in their graph-safe form, eager vs. recorded and replayed: the same losses
    step after step (deterministic kernels, so both runs reduce in the same order)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        runs = []
        for graphed in (False, True):
            cfg = compose_cfg(
                [*TRIPLE, "model.schedule.pretrain_epochs=0", "model.schedule.pseudo_label_epoch=1", "seed=5"],
                output_dir=tmp_path,
            )
            datamodule, model, _ = build(cfg)
            model.cuda().train()
            model.setup("fit")
            optimizers = model.bare_optimizers()
            make_capturable(optimizers.values())
            model.bare_steps = True
            graph = IterationGraph(warmup=2) if graphed else None
            values = []
            for batch, _ in zip(datamodule.train_dataloader(), range(8)):
                batch = model.on_after_batch_transfer({k: (x.cuda(), y.cuda()) for k, (x, y) in batch.items()}, 0)
                kind = model.iteration_kind(optimizers)
                run = lambda b, kind=kind, model=model, opt=optimizers: model.iteration(b, opt, kind)
                logs = run(batch) if graph is None else graph(kind, run, batch)
                values.append(torch.stack([logs[k] for k in [*GAME_KEYS, "train/c/pseudo"]]).cpu())
            runs.append(torch.stack(values))
        assert graph.captures == 1
        # float noise only (the recorded matrix products may pick other cuBLAS kernels): a wrong random stream
        # or a stale input would move the losses by orders of magnitude more
        torch.testing.assert_close(runs[1], runs[0], rtol=1e-3, atol=5e-4)
    finally:
        torch.use_deterministic_algorithms(False)


@needs_cuda
def test_cuda_graphs_train_through_pretraining_game_and_pseudo_labels(tmp_path):
    """Lightning run: pre-training, game and game with R_P each recorded once; Lightning's step counter and the
    logged losses follow eager mode (closely: the graph-safe Adam rounds its bias correction in float32, and
    C's hard labels can flip on such differences)."""
    overrides = [
        *TRIPLE,
        "trainer.accelerator=gpu",
        "trainer.precision=32-true",
        "trainer.limit_train_batches=7",
        "model.schedule.pretrain_epochs=1",
        "model.epochs=2",
        "trainer.max_epochs=3",
        "model.schedule.pseudo_label_epoch=2",
        "seed=3",
    ]

    model, trainer, graphed, eager = _graphed_and_eager(overrides, tmp_path)
    assert model.iteration_recorder.graph.captures == 3
    assert trainer.global_step == 7 + 2 * 7 * 3
    assert len(graphed) == len(eager) == 21
    _assert_same_steps(graphed, eager)


def _graphed_and_eager(overrides: list[str], tmp_path):
    """A Lightning run with CUDA graphs and one without: the graphed run's model and trainer, and both runs' losses at
    every step."""
    values = []
    for graphs in (True, False):
        cfg = compose_cfg([*STEPWISE, *overrides, f"trainer.cuda_graphs={graphs}"], output_dir=tmp_path / str(graphs))
        datamodule, model, trainer = build(cfg)
        record = _Steps()
        trainer.callbacks.append(record)
        trainer.fit(model, datamodule=datamodule)
        values.append(record.values)
        if graphs:
            graphed_model, graphed_trainer = model, trainer
    return graphed_model, graphed_trainer, *values


def _assert_same_steps(graphed: list[dict], eager: list[dict]) -> None:
    """The same losses logged at every step (closely: the graph-safe Adam rounds its bias correction in float32)."""
    for g, e in zip(graphed, eager):
        assert g.keys() == e.keys()
        torch.testing.assert_close(torch.tensor(list(g.values())), torch.tensor(list(e.values())), rtol=2e-2, atol=1e-3)


@needs_cuda
@pytest.mark.parametrize(
    "model,kinds,updates",
    [
        (
            ["model=dcgan"],
            1,
            2 * 12 * 2,
        ),  # D and G on every batch (batch norm in both networks): 2 epochs of 12 batches
        (
            ["model=cgan", "model.d_steps=2"],
            2,
            2 * 12 // 2 * 3,
        ),  # D-only and D-and-G batches alternate: two records, in turn
    ],
)
def test_cuda_graphs_record_each_kind_of_gan_batch(model, kinds, updates, tmp_path):
    """A GAN's Lightning run with CUDA graphs: one record per kind of batch, Lightning's step counter and the
    logged losses as in eager mode (float noise apart)."""
    game, trainer, graphed, eager = _graphed_and_eager(
        [*model, "trainer.accelerator=gpu", "trainer.precision=32-true", "trainer.limit_train_batches=12", "seed=3"],
        tmp_path,
    )
    assert game.iteration_recorder.graph.captures == kinds
    assert trainer.global_step == updates
    assert len(graphed) == len(eager) == 12 * trainer.max_epochs
    _assert_same_steps(graphed, eager)


class _Steps(L.Callback):
    """Every loss logged at each step (pre-training and game keys as they appear)."""

    def __init__(self) -> None:
        self.values = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.values.append(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "pretrain/"))}
        )


def test_checkpoints_keep_optimizers_in_their_plain_form():
    """A run with CUDA graphs saves float learning rates and non-capturable optimizers: it resumes on a CPU."""
    model = instantiate_model(compose_cfg(TRIPLE))
    opt = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)
    opt.param_groups[0]["lr"] = torch.tensor(2.5e-4)
    opt.param_groups[0]["capturable"] = True
    checkpoint = {"optimizer_states": [opt.state_dict()]}
    model.on_save_checkpoint(checkpoint)
    group = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == pytest.approx(2.5e-4)
    assert isinstance(group["lr"], float)
    assert group["capturable"] is False
    assert opt.param_groups[0]["capturable"] is True
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    fresh = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)
    fresh.load_state_dict(checkpoint["optimizer_states"][0])
    model.classifier(torch.rand(2, 1, 28, 28)).sum().backward()
    fresh.step()  # a capturable Adam would refuse CPU parameters
