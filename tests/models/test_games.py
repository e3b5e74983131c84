"""The games' training steps on tiny real data: which network each step updates, in which order, the value of
every logged term, the EMA update, and a baseline that learns."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import CONF, compose_cfg
from hydra.utils import instantiate

from gan_lightning.__main__ import _user_error
from gan_lightning.callbacks import RunProgressBar
from gan_lightning.data import MNISTDataModule, StreamBatches
from gan_lightning.data.batches import EvalBatches
from gan_lightning.errors import ConfigError
from gan_lightning.tbread import read_scalars

SMALL_TRIPLE = [
    "model=triple_gan",
    "model.generator_batch=20",
    "model.schedule.pretrain_epochs=0",
    "model.batch_sizes.c_labeled=20",
    "model.batch_sizes.c_unlabeled=20",
    "model.batch_sizes.d_labeled=2",
    "model.batch_sizes.d_unlabeled=20",
]


@pytest.fixture(scope="module")
def mnist(data_root):
    dm = MNISTDataModule(str(data_root), (1, 28, 28), 10, download=False)
    dm.setup()
    x, y = dm.splits.train_x[:1000], dm.splits.train_y[:1000]
    return {"train": (x, y), "labeled": (x[:100], y[:100]), "test": (dm.splits.test_x[:1000], dm.splits.test_y[:1000])}


def batches(mnist, model, n, pretraining=False):
    """``n`` batches of the streams the game declares (its pre-training's with ``pretraining``)."""
    sources = {k: mnist[k] for k in ("train", "labeled")}
    return StreamBatches(sources, model.plan.phase(pretraining).streams, n, seed=0)


class Recorder(L.Callback):
    """Records, after every optimizer step, which networks' parameters changed since the previous step."""

    def __init__(self, nets: list[str]) -> None:
        self.nets, self.events, self.metrics = nets, [], []

    def _snapshot(self, module):
        return {n: [p.detach().clone() for p in getattr(module, n).parameters()] for n in self.nets}

    def on_train_start(self, trainer, module):
        self.last = self._snapshot(module)
        for i, opt in enumerate(trainer.optimizers):
            opt.register_step_post_hook(lambda *_a, i=i: self._after_step(i, module))

    def _after_step(self, i, module):
        now = self._snapshot(module)
        changed = {n for n in self.nets if any(not torch.equal(a, b) for a, b in zip(self.last[n], now[n]))}
        self.events.append((i, changed))
        self.last = now

    def on_train_batch_end(self, trainer, module, *args):
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit(model, data, steps, callbacks=(), val=None, logger=False, log_every_n_steps=1):
    """One epoch of ``steps`` batches on the CPU, without checkpoints, progress bar or summary."""
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=steps,
        logger=logger,
        log_every_n_steps=log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        limit_val_batches=1.0 if val is not None else 0,
    )
    trainer.fit(model, train_dataloaders=data, val_dataloaders=val)
    return trainer


@pytest.mark.parametrize(
    "d_steps,g_steps,n,expected",
    [
        (1, 1, 2, ["discriminator", "generator"] * 2),
        (2, 1, 4, ["discriminator", "discriminator", "generator"] * 2),
        (1, 3, 3, ["generator", "generator", "discriminator", "generator"]),
    ],
)
def test_gan_alternates_d_and_g_updates(mnist, d_steps, g_steps, n, expected):
    cfg = compose_cfg(
        ["model=gan", f"model.d_steps={d_steps}", f"model.g_steps={g_steps}", "model.batch_sizes.real=32"]
    )
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["generator", "discriminator"])
    fit(model, batches(mnist, model, n), n, [rec])
    assert [changed for _, changed in rec.events] == [{net} for net in expected]
    assert all(math.isfinite(v) for m in rec.metrics for v in m.values())


@pytest.mark.parametrize("model_name", ["dcgan", "cgan", "cdcgan", "maxout_gan"])
def test_every_gan_variant_trains_on_mnist(mnist, model_name):
    cfg = compose_cfg(
        [f"model={model_name}", "model.batch_sizes.real=16", "model.discriminator.base_channels=8"]
        if "dcgan" in model_name
        else [f"model={model_name}", "model.batch_sizes.real=16"]
    )
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["generator", "discriminator"])
    fit(model, batches(mnist, model, 2), 2, [rec])
    assert [c for _, c in rec.events] == [{"discriminator"}, {"generator"}] * 2
    images, nrow = model.sample_images()
    if model_name.startswith("c"):
        assert images.shape == (100, 1, 28, 28)
        assert nrow == 10
    assert images.min() >= 0
    assert images.max() <= 1


def test_triple_gan_step_order_and_parameters_touched(mnist):
    cfg = compose_cfg(SMALL_TRIPLE)
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["classifier", "generator", "discriminator"])
    ema_before = [p.detach().clone() for p in model.ema.module.parameters()]
    fit(model, batches(mnist, model, 2), 2, [rec])
    assert [(i, c) for i, c in rec.events] == [(0, {"discriminator"}), (1, {"generator"}), (2, {"classifier"})] * 2
    m = rec.metrics[-1]
    for term in [
        "train/d/real",
        "train/d/fake_g",
        "train/d/fake_c",
        "train/g/adv",
        "train/c/adv",
        "train/c/supervised",
        "train/c/entropy",
        "train/c/balance",
        "train/c/l2",
    ]:
        assert math.isfinite(m[term]), term
    assert "train/c/pseudo" not in m  # R_P starts at game epoch 300
    assert not all(torch.equal(a, b) for a, b in zip(ema_before, model.ema.module.parameters()))


def test_triple_gan_pretraining_only_moves_c(mnist):
    cfg = compose_cfg([*SMALL_TRIPLE, "model.schedule.pretrain_epochs=1", "model.pretrain_batch_sizes.c_unlabeled=30"])
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["classifier", "generator", "discriminator"])
    fit(model, batches(mnist, model, 3, pretraining=True), 3, [rec])
    assert rec.events == [(3, {"classifier"})] * 3
    assert set(rec.metrics[-1]) >= {
        "pretrain/c/supervised",
        "pretrain/c/entropy",
        "pretrain/c/balance",
        "pretrain/c/loss",
    }


def _c_step_metrics(mnist, overrides):
    cfg = compose_cfg(SMALL_TRIPLE + overrides)
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["classifier"])
    fit(model, batches(mnist, model, 1), 1, [rec])
    return rec.metrics[0]


def _c_loss_from_terms(m: dict, extra_term: str, extra_weight: float) -> float:
    """C's loss rebuilt from its logged terms: the official weights (adversarial at alpha 0.5, R_L, entropy 0.3,
    balance 1e-3, L2 1e-4) plus ``extra_weight`` times ``extra_term``."""
    official = 0.5 * m["train/c/adv"] + m["train/c/supervised"] + 0.3 * m["train/c/entropy"]
    return official + 1e-3 * m["train/c/balance"] + 1e-4 * m["train/c/l2"] + extra_weight * m[f"train/c/{extra_term}"]


@pytest.mark.parametrize("term,weight", [("c_entropy", 0.3), ("c_balance", 1e-3), ("c_adv", 0.5)])
def test_switching_a_term_off_removes_exactly_that_term(mnist, term, weight):
    on = _c_step_metrics(mnist, [])
    off = _c_step_metrics(mnist, [f"model.weights.{term}=0"])
    name = "train/c/" + term.split("_", 1)[1]
    assert on["train/c/supervised"] == pytest.approx(off["train/c/supervised"], rel=1e-6)
    assert on["train/d/loss"] == pytest.approx(off["train/d/loss"], rel=1e-6)
    # c_adv is always logged (its weight scales it by alpha); the others are not computed when off
    assert on["train/c/loss"] - off["train/c/loss"] == pytest.approx(weight * on[name], rel=1e-4, abs=1e-6)


def test_pseudo_label_term_and_integrate_objective(mnist):
    m = _c_step_metrics(mnist, ["model.schedule.pseudo_label_epoch=1", "model.objective=integrate"])
    assert m["train/c/pseudo"] > 0
    assert math.isfinite(m["train/c/adv"])
    rebuilt = _c_loss_from_terms(m, "pseudo", 0.1)
    assert m["train/c/loss"] == pytest.approx(rebuilt, rel=1e-5)


AUGMENT = ["model.additions.augment={_target_:gan_lightning.nets.blocks.RandomTranslate,max_shift:2}"]


def test_augmented_inputs_and_consistency_term(mnist):
    m = _c_step_metrics(mnist, [*AUGMENT, "model.weights.c_consistency=2.0"])
    assert m["train/c/consistency"] > 0
    rebuilt = _c_loss_from_terms(m, "consistency", 2.0)
    assert m["train/c/loss"] == pytest.approx(rebuilt, rel=1e-5)
    plain = _c_step_metrics(mnist, [])
    assert "train/c/consistency" not in plain  # off by default, not computed
    # the augmentation changes what C sees: same seed, same batch, other labeled loss
    assert m["train/c/supervised"] != pytest.approx(plain["train/c/supervised"], rel=1e-4)


def test_confident_label_term_with_affine_augmentation(mnist):
    affine = ["model.additions.augment={_target_:gan_lightning.nets.blocks.RandomAffine,degrees:10,translate:2}"]
    # threshold 0: every image gets the teacher's label, so the term is a plain cross-entropy (> 0)
    m = _c_step_metrics(mnist, [*affine, "model.weights.c_confident=0.5", "model.additions.confidence_threshold=0.0"])
    assert m["train/c/confident"] > 0
    rebuilt = _c_loss_from_terms(m, "confident", 0.5)
    assert m["train/c/loss"] == pytest.approx(rebuilt, rel=1e-5)
    # threshold 1: an untrained teacher is never that sure, nothing is labelled
    assert (
        _c_step_metrics(mnist, [*affine, "model.weights.c_confident=0.5", "model.additions.confidence_threshold=1.0"])[
            "train/c/confident"
        ]
        == 0.0
    )
    with pytest.raises(Exception, match=r"model\.additions\.confidence_threshold=1\.5 must be in \[0, 1\]") as err:
        instantiate(compose_cfg([*SMALL_TRIPLE, "model.additions.confidence_threshold=1.5"]).model)
    found = _user_error(err.value)  # what the CLI prints
    assert isinstance(found, ConfigError)
    assert str(found) == "model.additions.confidence_threshold=1.5 must be in [0, 1]"


def test_distribution_alignment_moves_the_running_marginal_and_old_checkpoints_load(mnist):
    affine = [
        "model.additions.augment={_target_:gan_lightning.nets.blocks.RandomAffine,degrees:10,translate:2}",
        "model.weights.c_confident=0.5",
        "model.additions.confidence_threshold=0.0",
        "model.weights.c_consistency=1.0",
    ]
    cfg = compose_cfg(
        SMALL_TRIPLE + affine + ["model.additions.align_distribution=true", "model.additions.align_momentum=0.5"]
    )
    model = instantiate(cfg.model)
    x_u = mnist["train"][0][:20].float() / 255
    seen = []  # the teacher's own (unaligned) outputs
    model.ema.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().float()))
    model.classifier_terms(x_u[:4], mnist["train"][1][:4], x_u, model.classifier(x_u), model.weights)
    assert len(seen) == 1
    raw_mean = seen[0].softmax(1).mean(0)
    assert torch.allclose(model.teacher_marginal, 0.5 * torch.full((10,), 0.1) + 0.5 * raw_mean, atol=1e-6)
    assert model.teacher_marginal.sum().item() == pytest.approx(1.0, abs=1e-5)
    # the buffer is saved, and a state dict without it (an older checkpoint) loads with the uniform start
    state = model.state_dict()
    assert "teacher_marginal" in state
    del state["teacher_marginal"]
    fresh = instantiate(cfg.model)
    fresh.teacher_marginal.fill_(0.5)
    fresh.load_state_dict(state, strict=True)
    assert torch.allclose(fresh.teacher_marginal, torch.full((10,), 0.1))
    with pytest.raises(Exception, match=r"model\.additions\.align_momentum=1 must be in \[0, 1\)") as err:
        instantiate(compose_cfg([*SMALL_TRIPLE, "model.additions.align_momentum=1"]).model)
    assert str(_user_error(err.value)) == "model.additions.align_momentum=1 must be in [0, 1)"
    with pytest.raises(  # nothing would use the aligned targets
        Exception,
        match=r"model\.additions\.align_distribution=true changes the EMA copy's targets, but no term uses them",
    ) as err:
        instantiate(compose_cfg([*SMALL_TRIPLE, "model.additions.align_distribution=true"]).model)
    assert str(_user_error(err.value)).startswith(
        "model.additions.align_distribution=true changes the EMA copy's targets, but no term uses them"
    )


def test_ema_teacher_keeps_dropout_and_its_running_statistics(mnist):
    cfg = compose_cfg(SMALL_TRIPLE + AUGMENT)
    model = instantiate(cfg.model)
    model.update_ema()
    model.eval()
    x = mnist["train"][0][:8].float() / 255
    stats = [b.clone() for b in model.ema.module.buffers() if b.is_floating_point()]
    with torch.no_grad(), model.ema_as_teacher():
        assert model.ema.training
        first, second = model.ema(x), model.ema(x)
    assert not torch.equal(first, second)  # dropout, as the student
    assert all(
        torch.equal(a, b) for a, b in zip(stats, [b for b in model.ema.module.buffers() if b.is_floating_point()])
    )
    assert not model.ema.training  # the mode it had
    assert all(m.momentum == 0.1 for m in model.ema.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_ema_update_follows_the_decay_after_its_warm_up(mnist):
    cfg = compose_cfg([*SMALL_TRIPLE, "model.ema_decay=0.9"])
    model = instantiate(cfg.model)
    model.update_ema()  # first update copies
    for n in range(1, 120):  # update n uses decay min(0.9, (1 + n) / (10 + n)): 2/11 first, 0.9 from n = 80
        with torch.no_grad():
            for p in model.classifier.parameters():
                p.add_(1.0)
        before = [p.clone() for p in model.ema.module.parameters()]
        model.update_ema()
        d = min(0.9, (1 + n) / (10 + n))
        for b, e, c in zip(before, model.ema.module.parameters(), model.classifier.parameters()):
            assert torch.allclose(e, d * b + (1 - d) * c, atol=1e-4)
    assert d == 0.9


def test_ema_batch_norm_statistics_follow_the_network_early(mnist):
    """With BN, the EMA copy must not keep the initial running variance (1) for ~1/(1-decay) steps."""
    cfg = compose_cfg([*SMALL_TRIPLE, "model.ema_decay=0.999"])
    model = instantiate(cfg.model)
    bn = model.classifier.features[1]
    for _ in range(50):
        with torch.no_grad():
            bn.running_var.fill_(0.01)
        model.update_ema()
    assert model.ema.module.features[1].running_var.max() < 0.02


@pytest.mark.parametrize("game", [["model=cdcgan", "model.batch_sizes.real=16"], SMALL_TRIPLE])
def test_an_ema_copy_of_g_renders_and_travels_in_checkpoints(mnist, game):
    """decay 0: the copy is G after each of its steps; 0.5: it lags G. What the game renders comes from the copy."""
    for decay in (0.0, 0.5):
        L.seed_everything(0)
        model = instantiate(compose_cfg([*game, f"model.samples.g_ema_decay={decay}"]).model)
        rec = Recorder(["generator"])
        fit(model, batches(mnist, model, 3), 3, [rec])
        assert sum(changed == {"generator"} for _, changed in rec.events) == 3  # three G steps, averaged
        same = all(torch.equal(a, b) for a, b in zip(model.g_ema.module.parameters(), model.generator.parameters()))
        assert same == (decay == 0.0)
        z, y = model.fixed_z[:20], model.fixed_y[:20]
        model.generator.eval()
        model.g_ema.module.eval()
        with torch.no_grad():
            from_copy = model.to_unit(model.g_ema.module(z, y))
            from_g = model.to_unit(model.generator(z, y))
        assert torch.allclose(model.generate(z, y), from_copy)
        assert torch.allclose(model.generate(z, y), from_g) == (decay == 0.0)
    fresh = instantiate(compose_cfg([*game, "model.samples.g_ema_decay=0.5"]).model)
    fresh.load_state_dict(model.state_dict(), strict=True)  # as a checkpoint is loaded: the copy's weights in it
    assert torch.allclose(fresh.generate(z, y), model.generate(z, y), atol=1e-6)  # (another memory layout)


def test_bad_model_settings_are_config_errors():
    for overrides, message in [
        (["model.alpha=1.5"], "alpha=1.5"),
        (["model.objective=mean"], "objective"),
        (["+model.weights.c_entrpy=1"], "unknown terms \\['c_entrpy'\\]"),
        (["model.generator_batch=25"], "multiple of the 10 classes"),
        (["model.ema_decay=1.0"], "ema_decay"),
        (["model.samples.g_ema_decay=1.0"], r"model.samples.g_ema_decay=1.0 must be in \[0, 1\)"),
    ]:
        with pytest.raises(Exception, match=message) as err:
            instantiate(compose_cfg(overrides).model)
        assert any(isinstance(e, ConfigError) for e in (err.value, err.value.__cause__)), overrides
        assert err.match(message)


@pytest.mark.slow
def test_baseline_classifier_learns_from_100_labels(mnist):
    cfg = compose_cfg(["model=classifier", "model.optimizer.lr=2e-3"])
    L.seed_everything(0)
    model = instantiate(cfg.model)
    rec = Recorder(["classifier"])
    data = StreamBatches({"train": mnist["train"], "labeled": mnist["labeled"]}, model.plan.game.streams, 80, seed=0)
    trainer = fit(model, data, 80, [rec], val=EvalBatches(*mnist["test"], 500))
    first = sum(m["train/c/supervised"] for m in rec.metrics[:5]) / 5
    last = sum(m["train/c/supervised"] for m in rec.metrics[-5:]) / 5
    assert last < 0.5 * first
    assert trainer.callback_metrics["val/acc_c"] > 0.5  # 10 % is chance


@pytest.mark.parametrize(
    "overrides",
    [
        *(
            [f"experiment={p.stem}"] for p in sorted((CONF / "experiment").glob("*.yaml"))
        ),  # every preset, found on disk
        *([f"model={p.stem}"] for p in sorted((CONF / "model").glob("*.yaml"))),
        ["model=triple_gan", "model/nets=triple_gan_conv"],
        ["model=triple_gan", "data=fashion_mnist"],
        ["model=dcgan", "data=cifar10"],
        ["model=cdcgan", "data=cifar10"],
        ["model=dcgan", "data=svhn"],
    ],
)
def test_every_preset_builds_its_model(overrides):
    cfg = compose_cfg(overrides)
    model = instantiate(cfg.model)
    pretrain_epochs = cfg.model.schedule.pretrain_epochs if "schedule" in cfg.model else 0
    assert cfg.trainer.max_epochs == cfg.model.epochs + pretrain_epochs
    assert model.plan is not None
    assert set(model.plan.game.streams) == set(type(model).STREAMS)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_report_preset_is_the_simplified_game():
    cfg = compose_cfg(["experiment=triple_gan_report"])
    model = instantiate(cfg.model)
    assert model.alpha == 0.3
    assert not model.fidelity.d_unlabeled_real
    assert (
        model.hparams.fidelity["d_unlabeled_real"] is False
    )  # the checkpoint's hparams hold the settings as plain values
    assert model.generator.label.mode == "embedding"
    assert model.discriminator.label.mode == "embedding"
    x = model.generator(torch.rand(4, 100), torch.arange(4))
    assert x.min() >= 0
    assert x.max() <= 1


def test_non_finite_loss_stops_with_the_network_and_step(mnist):
    from gan_lightning.errors import TrainingError

    cfg = compose_cfg(["model=gan", "model.batch_sizes.real=16"])
    model = instantiate(cfg.model)
    with torch.no_grad():
        model.discriminator.net[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"discriminator loss is nan at global step 0"):
        fit(model, batches(mnist, model, 2), 2)


class Shown(L.Callback):
    """After every batch: what the run's progress bar shows, and what Lightning's logging holds for the bar."""

    def __init__(self) -> None:
        self.bars: list[dict] = []
        self.logged: list[dict] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.bars.append({k: v for k, v in RunProgressBar().get_metrics(trainer, module).items() if k != "v_num"})
        self.logged.append(dict(trainer.progress_bar_metrics))


def test_step_scalars_reach_lightning_on_logging_steps_and_the_progress_bar_on_every_step(mnist, tmp_path):
    """Every scalar is logged on the steps a logger writes (every log_every_n_steps), the bar's loss with them; the
    run's progress bar shows a fresh loss after every step (on the CPU) without Lightning's logging."""
    cfg = compose_cfg(["model=gan", "model.batch_sizes.real=32"])
    L.seed_everything(0)
    model = instantiate(cfg.model)
    shown = Shown()
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="")
    fit(model, batches(mnist, model, 6), 6, [shown], logger=logger, log_every_n_steps=3)
    g = [bar["g_loss"] for bar in shown.bars]
    assert len(set(g)) == 6  # a fresh G loss on the bar after every step
    assert [m.get("g_loss") for m in shown.logged] == [
        None,
        None,
        g[2],
        g[2],
        g[2],
        g[5],
    ]  # handed to Lightning on steps 3 and 6
    written = read_scalars(tmp_path)
    assert (
        [step for _, step, _ in written["train/d/loss"]] == [2, 5] == [step for _, step, _ in written["train/g/loss"]]
    )
    assert [v for _, _, v in written["train/g/loss"]] == pytest.approx([g[2], g[5]])  # the bar's value, logged
    assert "g_loss" not in written


def test_triple_gan_shows_cs_loss_on_the_progress_bar_in_pretraining_and_in_the_game(mnist):
    """The bar shows C's loss under one name in both phases; nothing is handed to Lightning before a logging step."""
    for pretrain_epochs in (1, 0):
        cfg = compose_cfg(
            [
                *SMALL_TRIPLE,
                f"model.schedule.pretrain_epochs={pretrain_epochs}",
                "model.pretrain_batch_sizes.c_unlabeled=30",
            ]
        )
        L.seed_everything(0)
        model = instantiate(cfg.model)
        shown = Shown()
        data = batches(mnist, model, 2, pretraining=bool(pretrain_epochs))
        trainer = fit(model, data, 2, [shown], log_every_n_steps=50)
        assert [set(bar) for bar in shown.bars] == [
            {"c_loss"},
            {"c_loss"},
        ]  # one name in both phases: never a stale pre-training value
        assert shown.logged == [{}, {}]
        assert not any(k.startswith(("train/", "pretrain/")) for k in trainer.callback_metrics)  # no logging step yet
