"""Triple-GAN's fidelity to the official script, the wall-time / quality schedule, other G and D in the game,
and the generator's metrics during training (real MNIST, real CLI runs)."""

from __future__ import annotations

import json
import re

import lightning as L
import numpy as np
import pytest
import torch
from conftest import DATA_ROOT, compose_cfg, needs_mnist, run_cli
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from gan_lightning import losses
from gan_lightning.data import MNISTDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import analysis
from gan_lightning.plan import DataPlan, Phase
from gan_lightning.tbread import read_scalars

pytestmark = needs_mnist

# batch sizes that tell the forwards apart: C labeled 4, C unlabeled 6, D labeled 1, D unlabeled 8, G 10
SIZES = {"c_labeled": 4, "c_unlabeled": 6, "d_labeled": 1, "d_unlabeled": 8}
SMALL = [
    "model=triple_gan",
    "model.generator_batch=10",
    "model.schedule.pretrain_epochs=0",
    "model.channels_last=false",
    *[f"model.batch_sizes.{k}={v}" for k, v in SIZES.items()],
]


LABELED = DataPlan(Phase({"l": {"source": "labeled", "batch_size": 10}}, "l"))


@pytest.fixture(scope="module")
def mnist(data_root):
    dm = MNISTDataModule(str(data_root), (1, 28, 28), 10, download=False)
    dm.setup()
    return dm.splits


def _batch(splits, offset=0):
    out, start = {}, offset
    for name, n in SIZES.items():
        out[name] = (splits.train_x[start : start + n].float() / 255, splits.train_y[start : start + n])
        start += n
    return out


def _model(overrides=()):
    L.seed_everything(0)
    model = instantiate(compose_cfg([*SMALL, *overrides]).model)
    model.bare_steps = True  # steps without a trainer
    return model, model.bare_optimizers()


def test_official_label_split_matches_an_independent_computation(mnist):
    labels = mnist.train_y.numpy()
    for seed in (1, 2):
        dm = MNISTDataModule(
            str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, label_seed=seed, label_split="official", download=False
        )
        dm.serve(LABELED)
        dm.setup()
        # the official script: permute the training set with numpy's RandomState(seed), keep the first 10 of each class
        perm = np.random.RandomState(seed).permutation(len(labels))
        expected, count = [], dict.fromkeys(range(10), 0)
        for i in perm:
            if count[labels[i]] < 10:
                count[labels[i]] += 1
                expected.append(int(i))
        assert sorted(expected) == dm.labeled_idx.tolist()
    other = MNISTDataModule(
        str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, label_seed=1, label_split="torch", download=False
    )
    other.serve(LABELED)
    other.setup()
    assert other.labeled_idx.tolist() != dm.labeled_idx.tolist()  # the torch split is another set of images
    with pytest.raises(ConfigError, match=r"data\.label_split='numpy' is not one of"):
        MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, label_split="numpy")


def test_triple_gan_presets_use_the_official_split():
    for overrides in (
        ["model=triple_gan"],
        ["experiment=triple_gan_mnist100_fast"],
        ["experiment=classifier_mnist100"],
    ):
        assert compose_cfg(overrides).data.label_split == "official"


def _record_forwards(model):
    """(network, batch size, whether C's BN running statistics move) of every forward of C and G."""
    calls = []
    bn = next(m for m in model.classifier.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.classifier.register_forward_pre_hook(lambda m, args: calls.append(("C", len(args[0]), bn.momentum != 0)))
    model.generator.register_forward_pre_hook(lambda m, args: calls.append(("G", len(args[0]), args[0].clone())))
    return calls


@pytest.mark.parametrize(
    "reuse,bn_update,c_calls",
    [
        # official: D's step labels D's unlabeled batch (8) and C's unlabeled batch (6); C's step runs C again on it
        # and on the labeled batch (4); every train-mode forward moves the running statistics
        (False, "all", [(8, True), (6, True), (6, True), (4, True)]),
        (True, "all", [(8, True), (6, True), (4, True)]),
        (False, "unlabeled", [(8, False), (6, False), (6, True), (4, False)]),
        (True, "unlabeled", [(8, False), (6, True), (4, False)]),
    ],
)
def test_forwards_of_a_game_step_and_which_move_c_batch_statistics(mnist, reuse, bn_update, c_calls):
    model, opts = _model(
        [f"model.fidelity.reuse_forwards={str(reuse).lower()}", f"model.fidelity.c_bn_update={bn_update}"]
    )
    calls = _record_forwards(model)
    model.game_step(_batch(mnist), opts)
    assert [(n, moves) for net, n, moves in calls if net == "C"] == c_calls
    g = [z for net, _, z in calls if net == "G"]
    assert len(g) == (1 if reuse else 2)  # official: G's step draws fresh z
    if not reuse:
        assert not torch.equal(g[0], g[1])


def test_running_statistics_stay_when_frozen(mnist):
    model, _opts = _model(["model.fidelity.c_bn_update=unlabeled"])
    bn = next(m for m in model.classifier.modules() if isinstance(m, torch.nn.BatchNorm2d))
    calls = _record_forwards(model)
    before = bn.running_mean.clone()
    with model.c_stats_frozen():
        model.classifier(_batch(mnist)["c_labeled"][0])
    assert torch.equal(bn.running_mean, before)
    assert calls[-1][2] is False
    model.classifier(_batch(mnist)["c_unlabeled"][0])
    assert not torch.equal(bn.running_mean, before)


def test_r_p_forward_and_c_optimizer_restart(mnist):
    model, opts = _model(
        ["model.weights.c_pseudo=0.1", "model.schedule.pseudo_label_epoch=2", "model.schedule.adv_warmup_epochs=0"]
    )
    model.iteration(_batch(mnist), opts)  # game epoch 1: no R_P
    c_param = next(model.classifier.parameters())
    assert int(opts.c.state[c_param]["step"]) == 1
    assert not model.schedule.c_optimizer_restarted
    model.iteration(_batch(mnist, 50), opts)
    assert int(opts.c.state[c_param]["step"]) == 2
    model.schedule.pretrain_end = (
        -1
    )  # now game epoch 2: R_P on, C's Adam starts afresh (official: a second compiled update)
    calls = _record_forwards(model)
    logs = model.iteration(_batch(mnist, 100), opts)
    assert "train/c/pseudo" in logs
    assert model.schedule.c_optimizer_restarted
    assert int(opts.c.state[c_param]["step"]) == 1
    assert any(net == "C" and n == 10 for net, n, _ in calls)  # C's forward on G's samples
    model.iteration(_batch(mnist, 150), opts)
    assert int(opts.c.state[c_param]["step"]) == 2  # restarted once only


def test_probability_clip_of_the_official_cross_entropy():
    logits = torch.tensor([[20.0, 0.0, 0.0], [1.0, 2.0, 0.5]], requires_grad=True)
    y = torch.tensor([1, 1])
    clipped = losses.supervised(logits, y, eps=1e-6)
    p = logits.softmax(1)
    assert clipped.item() == pytest.approx(-(torch.log(p[0, 1].clamp(1e-6)) + torch.log(p[1, 1])).item() / 2, rel=1e-5)
    clipped.backward()
    assert logits.grad[0].abs().max() == 0
    assert logits.grad[1].abs().max() > 0
    assert losses.supervised(logits, y, eps=0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item()
    )
    assert losses.entropy(logits, eps=1e-6).item() == pytest.approx(losses.entropy(logits).item(), rel=1e-4)


def test_discriminator_with_batch_norm_is_refused_with_one_line():
    cfg = compose_cfg(
        [
            "model=triple_gan",
            "model.data_range=tanh",
            "~model.discriminator",
            (
                "+model.discriminator={_target_: gan_lightning.nets.dcgan.DCGANDiscriminator, image_shape: [1,28,28], "
                "num_classes: 10}"
            ),
        ]
    )
    with pytest.raises(Exception, match="has batch norm") as info:
        instantiate(cfg.model)
    from gan_lightning.__main__ import _user_error

    err = _user_error(info.value)
    assert isinstance(err, ConfigError)
    assert "has batch norm" in str(err)
    assert "\n" not in str(err)


@pytest.mark.slow
def test_convolutional_generator_and_discriminator_play_without_hurting_c(mnist):
    """DCGAN's conditional G and a spectrally normalised conv D in the game: a pre-trained C keeps its accuracy."""
    model, opts = _model(
        [
            "model.data_range=tanh",
            "model.latent_dist=normal",
            "~model.generator",
            "~model.discriminator",
            (
                "+model.generator={_target_: gan_lightning.nets.dcgan.DCGANGenerator, latent_dim: 100, "
                "image_shape: [1,28,28], base_channels: 8, num_classes: 10}"
            ),
            (
                "+model.discriminator={_target_: gan_lightning.nets.dcgan.DCGANDiscriminator, image_shape: [1,28,28], "
                "base_channels: 8, num_classes: 10, norm: spectral}"
            ),
        ]
    )
    x, y = mnist.train_x[:2000].float() / 127.5 - 1, mnist.train_y[:2000]
    test_x, test_y = mnist.test_x[:500], mnist.test_y[:500]
    pre = torch.optim.Adam(model.classifier.parameters(), lr=2e-3)
    for i in range(120):  # C alone on 2000 labeled images
        j = torch.randint(0, 2000, (64,), generator=torch.Generator().manual_seed(i))
        loss = torch.nn.functional.cross_entropy(model.classifier(x[j]), y[j])
        pre.zero_grad()
        loss.backward()
        pre.step()

    def accuracy():
        model.classifier.eval()
        with torch.no_grad():
            acc = analysis.accuracy(torch.nn.Sequential(_Scale(), model.classifier), test_x, test_y)
        model.classifier.train()
        return acc

    before = accuracy()
    assert before > 0.8
    for i in range(15):
        batch = {k: (v[0] * 2 - 1, v[1]) for k, v in _batch(mnist, 100 * i).items()}
        logs = model.game_step(batch, opts)
    assert all(torch.isfinite(v) for v in logs.values())
    assert accuracy() > before - 0.05


class _Scale(torch.nn.Module):
    def forward(self, x):  # analysis.accuracy feeds [0, 1] images; this game's C reads [-1, 1]
        return x * 2 - 1


@pytest.fixture(scope="session")
def scheduled_run(tmp_path_factory):
    """Pre-training ends by wall time (a third of 16 s), R_P starts by the quality trigger, G's metrics are logged."""
    run_dir = tmp_path_factory.mktemp("scheduled") / "run"
    proc = run_cli(
        [
            "model=triple_gan",
            "trainer=cpu",
            "trainer.max_time=00:00:00:16",
            "model.schedule.pretrain_time_share=0.33",
            "model.schedule.pretrain_epochs=1000",
            "model.schedule.pseudo_label_trigger=0.01",
            "model.schedule.pseudo_label_epoch=1000",
            "model.schedule.trigger_samples=100",
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
            "model.pretrain_batch_sizes.c_unlabeled=50",
            "model.batch_sizes.d_unlabeled=50",
            "paths.reference_dir=${shipped_references:}",
            "callbacks.generator_metrics.required=true",
            "callbacks.generator_metrics.every_n_epochs=1",
            "callbacks.generator_metrics.n_samples=200",
            "callbacks.generator_metrics.n_real=500",
            "callbacks.generator_metrics.per_class=false",
            "logger=tensorboard_csv",
            "callbacks.schedule.measure_batches=5",
        ],  # the speed line within the few batches of pre-training
        run_dir,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.mark.slow
@pytest.mark.xdist_group("scheduled_run")  # one worker runs the shared CLI run
def test_schedule_by_wall_time_and_quality(scheduled_run):
    run_dir, proc = scheduled_run
    scalars = read_scalars(run_dir / "tb")
    epoch_at = {s: int(v) for _, s, v in scalars["epoch"]}
    pre_steps = sorted(s for _, s, _ in scalars["pretrain/c/loss"])
    game = sorted((w, s) for w, s, _ in scalars["train/d/loss"])
    assert pre_steps
    assert game
    assert max(pre_steps) < game[0][1]
    start = min(w for w, _, _ in scalars["pretrain/c/loss"])
    assert game[0][0] - start >= 0.33 * 16 - 2  # not before its share of the time (first logged step ~ start)
    pseudo = sorted(s for _, s, _ in scalars.get("train/c/pseudo", []))
    acc_steps = sorted(s for _, s, _ in scalars["gen/ema_c_acc"])
    assert pseudo
    assert acc_steps
    assert min(pseudo) > acc_steps[0]
    assert "R_P starts at game epoch 2" in proc.stdout + proc.stderr
    assert "pre-training ends after epoch" in proc.stdout + proc.stderr
    assert max(epoch_at.values()) >= 2


@pytest.mark.slow
@pytest.mark.xdist_group("scheduled_run")  # one worker runs the shared CLI run
def test_generator_metrics_logged_during_the_game_only(scheduled_run):
    run_dir, _ = scheduled_run
    scalars = read_scalars(run_dir / "tb")
    first_game_step = min(s for _, s, _ in scalars["train/d/loss"])
    for tag in ("gen/fid", "gen/cond_acc", "gen/ema_c_acc"):
        steps = [s for _, s, _ in scalars[tag]]
        assert steps, tag
        assert min(steps) >= first_game_step, tag
    assert all(0 <= v <= 1 for _, _, v in scalars["gen/cond_acc"])
    assert all(v > 0 for _, _, v in scalars["gen/fid"])
    labeled = json.loads((run_dir / "labeled_indices.json").read_text())
    assert labeled["label_split"] == "official"


def _custom_scalar_layout(tb_dir):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    for path in sorted(tb_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "custom_scalars__config__":
                    layout = layout_pb2.Layout()
                    layout.ParseFromString(value.tensor.string_val[0])
                    return {
                        c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart} for c in layout.category
                    }
    return None


@pytest.mark.slow
@pytest.mark.xdist_group("scheduled_run")  # one worker runs the shared CLI run
def test_console_schedule_line_and_tensorboard_first_view(scheduled_run):
    run_dir, proc = scheduled_run
    out = proc.stdout + proc.stderr
    assert "schedule: pre-training" in out
    assert "stops after 0:00:16 (trainer.max_time)" in out
    assert "pre-training:" in out
    assert "it/s; the rest of the run" in out
    assert f"run directory: {run_dir}" in out
    assert "done in " in out
    # the closing line shows the final generator's FID: the one measured after trainer.max_time stopped the run
    done = re.search(r"done in .*gen/fid=([0-9.e+-]+)", out)
    last_fid = max(read_scalars(run_dir / "tb")["gen/fid"], key=lambda e: e[1])[2]
    assert done
    assert float(done.group(1)) == pytest.approx(last_fid, rel=1e-3)
    assert "litlogger" not in out.lower()
    assert "transfer_batch_to_device" not in out
    layout = _custom_scalar_layout(run_dir / "tb")
    assert layout["validation error"]["C and EMA C (validation error)"] == ["val/err_c$", "val/err_ema$"]
    assert layout["test error"]["C and EMA C (test error)"] == ["test/err_c$", "test/err_ema$"]
    assert list(layout)[:2] == ["validation error", "test error"]  # what is chosen by, then what is reported
    assert set(layout["losses"]) >= {"D", "G", "C", "C, pre-training"}
    assert "FID (reference features)" in layout["generator"]


def test_adversarial_warmup_by_a_share_of_the_time():
    model, _ = _model(["model.schedule.adv_warmup_time_share=0.2"])
    clock = iter([0.40, 0.45, 0.50, 0.70])  # shares of trainer.max_time at four steps of the game
    model.schedule.bind(lambda: next(clock))
    assert [model.schedule.adv_ramp(0, 0.0) for _ in range(4)] == pytest.approx([0.0, 0.25, 0.5, 1.0])
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    resumed, _ = _model(["model.schedule.adv_warmup_time_share=0.2"])
    resumed.on_load_checkpoint(checkpoint)
    resumed.schedule.bind(lambda: 0.55)
    assert resumed.schedule.game_start_share == pytest.approx(0.40)
    assert resumed.schedule.adv_ramp(0, 0.0) == pytest.approx(0.75)
    with pytest.raises(
        InstantiationException, match=r"model.schedule.adv_warmup_time_share=0 must be in \(0, 1\] or null"
    ):
        _model(["model.schedule.adv_warmup_time_share=0"])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["pretrain_time_share", "adv_warmup_time_share"])
def test_a_time_share_without_a_time_limit_is_one_line(key, tmp_path):
    proc = run_cli(
        ["model=triple_gan", "trainer=debug", "callbacks.progress_bar=null", f"model.schedule.{key}=0.3"],
        tmp_path / "run",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: model.schedule.{key} needs trainer.max_time (the share is of that time)" in proc.stderr, (
        proc.stderr[-2000:]
    )
