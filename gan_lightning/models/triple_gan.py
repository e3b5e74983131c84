"""Triple-GAN (Li et al., NIPS 2017) for semi-supervised classification, as in the official MNIST script.

Players: a classifier C (p_c(y|x)), a conditional generator G (p_g(x|y)), a discriminator D(x, y).
One iteration (the paper's Algorithm 1) = one D step, one G step, one C step:

    D: real pairs (x_l, y_l) and (x_u', argmax C(x_u'))      vs.   fake pairs (G(z, y), y) and (x_u, y ~ C)
    G: make D call (G(z, y), y) real
    C: make D call (x_u, y ~ C) real + R_L (labeled CE) + entropy + balance + L2 [+ alpha_P * R_P from an epoch]
       [+ consistency with its EMA copy, + its EMA copy's confident hard labels, on augmented inputs: additions,
        off in the official recipe]

Before the game C is pre-trained on labeled + unlabeled data (``pretrain_epochs``). Epochs of the game are
counted from 1 after pre-training, as in the official script. Each loss term is logged on its own and has a
weight in ``weights`` (0 switches it off); the adversarial terms are further scaled by alpha / (1 - alpha).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from gan_lightning import losses
from gan_lightning.acceleration import IterationGraph
from gan_lightning.errors import ConfigError
from gan_lightning.models.base import GameModule
from gan_lightning.models.evaluation import ClassifierEvaluation, batch_stats_frozen
from gan_lightning.models.generation import GeneratorGrid
from gan_lightning.models.graphed import GraphedIterations
from gan_lightning.nets.blocks import batch_stat_layers
from gan_lightning.plan import declare

# every loss term of the game and its weight (0 switches a term off); model.weights.<term>=... changes one
DEFAULT_WEIGHTS = MappingProxyType(
    {
        "d_real": 1.0,
        "d_fake_g": 1.0,
        "d_fake_c": 1.0,  # D: real pairs, G's pairs, C's pairs
        "g_adv": 1.0,
        "c_adv": 1.0,  # G's and C's adversarial terms
        "c_supervised": 1.0,
        "c_entropy": 0.3,
        "c_balance": 1e-3,
        "c_l2": 1e-4,  # C: CE on labels, entropy, class balance, L2
        "c_pseudo": 0.1,  # alpha_P of R_P (C's CE on G's samples)
        "c_consistency": 0.0,  # C vs. its EMA copy (mean teacher) on two draws of model.augment of x_u, with dropout
        "c_confident": 0.0,  # CE of C on x_u against the EMA copy's hard label where it is confident (FixMatch)
    }
)
# C's loss during its pre-training
PRETRAIN_WEIGHTS = MappingProxyType(
    {"c_supervised": 1.0, "c_entropy": 0.3, "c_balance": 0.3, "c_l2": 1e-4, "c_consistency": 0.0, "c_confident": 0.0}
)


class TripleGAN(GraphedIterations, GeneratorGrid, ClassifierEvaluation, GameModule):
    """Args:
        classifier, generator, discriminator: the three networks (C(x) -> logits, G(z, y) -> image, D(x, y) -> logit).
        optimizer_c, optimizer_g, optimizer_d: optimizer factories of the game; ``optimizer_pretrain``: C's pre-training.
        alpha: weight of C's fake pairs in U(C, G, D) (G's get 1 - alpha), Eq. (1).
        objective: C's adversarial gradient, ``integrate`` (exact expectation over classes) or ``argmax``.
        weights: weight of every loss term (see ``DEFAULT_WEIGHTS``); ``pretrain_weights``: C's pre-training loss.
        d_unlabeled_real: D also sees unlabeled images with C's hard label as real pairs (official script).
        pseudo_label_epoch: first game epoch of the pseudo-label term R_P (Eq. 3).
        adv_warmup_epochs: ramp C's adversarial and pseudo-label weights linearly from 0 over these game epochs.
        lr_anneal_epoch / lr_anneal_factor: after this game epoch every learning rate is multiplied by the factor each epoch.
        generator_batch: size of G's batch, class-balanced (generator_batch / num_classes per class).
        ema_decay: decay of the EMA copy of C that is evaluated alongside C (the official 'avg' model: 0.99).
        augment: random label-preserving transform of C's training inputs (e.g. ``RandomTranslate``); None: none
            (official). D always sees the images as they are. The ``c_consistency`` term compares C on one draw
            with the EMA copy of C on another; ``c_confident`` trains C on the EMA copy's hard labels of another
            draw where its confidence is at least ``confidence_threshold``.
        teacher_augment: the transform of the EMA copy's inputs for these two terms; None: ``augment`` (e.g. a weak
            one here and a strong one in ``augment``, as FixMatch).
        align_distribution: for these two terms, align the EMA copy's probabilities to uniform class frequencies (the
            labeled split is class-balanced) by the running mean of its predictions (momentum ``align_momentum``).

    Fidelity to the official script (its behaviour is the default; each deviation is one switch):
        reuse_forwards: false (official): G's step draws fresh z and C's step runs C again on its unlabeled batch
            (new dropout mask, new hard labels); true: G and C are trained on the very samples and labels D's step used.
        prob_clip: C's probabilities are clipped to [prob_clip, 1 - prob_clip] in R_L, R_P, entropy and balance
            (official 1e-6); 0: exact log-softmax.
        restart_c_optimizer: C's Adam state starts afresh when R_P switches on (the official script compiles a
            second update with its own moments).
        c_bn_update: which train-mode forwards of C move its BN running statistics: ``all`` (official: every
            forward in D's and C's steps: D's unlabeled batch, C's unlabeled and labeled batches, G's samples with
            R_P) or ``unlabeled`` (only C's forwards on its unlabeled batch; the others use batch statistics only).

    Schedule by wall time and quality (both off by default):
        pretrain_time_share: pre-training ends after the epoch in which this share of ``trainer.max_time`` has
            passed (or after ``pretrain_epochs``, whichever comes first).
        adv_warmup_time_share: C's adversarial and pseudo-label weights ramp linearly from 0 over this share of
            ``trainer.max_time``, counted from the game's first step (instead of ``adv_warmup_epochs``): the warm-up
            takes the same part of the run on a fast and on a slow machine.
        pseudo_label_trigger: R_P starts after the first game epoch at whose end the EMA classifier labels at least
            this share of ``trigger_samples`` class-balanced samples of G as their class (or at
            ``pseudo_label_epoch``, whichever comes first). That share is logged every game epoch (``gen/ema_c_acc``).

    Data (``GameModule``): batch_sizes of the game's four streams, ``pretrain_batch_sizes`` of the pre-training's two,
        n_labeled (100 in the paper), epochs of the game; one epoch is one pass of C's unlabeled stream.
    """

    # per iteration: C's labeled and unlabeled batches, D's labeled and unlabeled ones
    STREAMS = {"c_labeled": "labeled", "c_unlabeled": "train", "d_labeled": "labeled", "d_unlabeled": "train"}
    PRETRAIN_STREAMS = {"c_labeled": "labeled", "c_unlabeled": "train"}
    EPOCH_LENGTH = "c_unlabeled"
    MONITOR = "val/err_ema"
    CUDA_GRAPHS_AUTO = True  # pre-training, the game and the game with R_P: one kind at a time (GRAPH_KINDS = 1)

    def __init__(
        self,
        classifier: nn.Module,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_c: Callable,
        optimizer_g: Callable,
        optimizer_d: Callable,
        optimizer_pretrain: Callable,
        num_classes: int = 10,
        latent_dim: int = 100,
        alpha: float = 0.5,
        objective: str = "argmax",
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        pretrain_weights: Mapping[str, float] = PRETRAIN_WEIGHTS,
        pretrain_epochs: int = 30,
        d_unlabeled_real: bool = True,
        pseudo_label_epoch: int = 300,
        adv_warmup_epochs: int = 0,
        lr_anneal_epoch: int = 300,
        lr_anneal_factor: float = 0.995,
        generator_batch: int = 200,
        ema_decay: float = 0.99,
        grid_columns: int = 10,
        grid_seed: int = 0,
        data_range: str = "unit",
        latent_dist: str = "uniform",
        channels_last: bool = True,
        augment: nn.Module | None = None,
        confidence_threshold: float = 0.95,
        teacher_augment: nn.Module | None = None,
        align_distribution: bool = False,
        align_momentum: float = 0.999,
        reuse_forwards: bool = False,
        prob_clip: float = 1e-6,
        restart_c_optimizer: bool = True,
        c_bn_update: str = "all",
        pretrain_time_share: float | None = None,
        pseudo_label_trigger: float | None = None,
        trigger_samples: int = 1000,
        adv_warmup_time_share: float | None = None,
        pretrain_batch_sizes: Mapping[str, int] | None = None,
        **plan: Any,
    ) -> None:
        weights, pretrain_weights = dict(weights or {}), dict(pretrain_weights or {})  # plain dicts in the hparams
        super().__init__(data_range=data_range, latent_dist=latent_dist, channels_last=channels_last, **plan)
        if self.plan is not None and pretrain_batch_sizes is not None:
            self.plan = replace(
                self.plan,
                pretrain=declare(
                    self.PRETRAIN_STREAMS, pretrain_batch_sizes, self.EPOCH_LENGTH, "model.pretrain_batch_sizes"
                ),
            )
        # networks and optimizer factories stay out of the hparams (checkpoints load with weights_only)
        self.save_hyperparameters(
            ignore=[
                "classifier",
                "generator",
                "discriminator",
                "optimizer_c",
                "optimizer_g",
                "optimizer_d",
                "optimizer_pretrain",
                "augment",
                "teacher_augment",
            ]
        )
        self.set_optimizer_factories(
            optimizer_c=optimizer_c,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
            optimizer_pretrain=optimizer_pretrain,
        )
        self.weights = self._check_weights(weights, DEFAULT_WEIGHTS, "weights")
        self.pretrain_weights = self._check_weights(pretrain_weights, PRETRAIN_WEIGHTS, "pretrain_weights")
        if latent_dim < 1 or grid_columns < 1 or num_classes < 2:
            raise ConfigError(
                f"model.latent_dim={latent_dim} and model.grid_columns={grid_columns} must be >= 1, model.num_classes={num_classes} >= 2"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"model.alpha={alpha} must be in [0, 1]")
        if objective not in ("argmax", "integrate"):
            raise ConfigError(f"model.objective={objective!r} is not one of ['argmax', 'integrate']")
        if generator_batch <= 0 or generator_batch % num_classes:
            raise ConfigError(
                f"model.generator_batch={generator_batch} must be a positive multiple of the {num_classes} classes"
            )
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ConfigError(f"model.confidence_threshold={confidence_threshold} must be in [0, 1]")
        if not 0.0 <= align_momentum < 1.0:
            raise ConfigError(f"model.align_momentum={align_momentum} must be in [0, 1)")
        teacher_terms = ("c_consistency", "c_confident")
        if align_distribution and not any(w[t] for w in (self.weights, self.pretrain_weights) for t in teacher_terms):
            raise ConfigError(
                "model.align_distribution=true changes the EMA copy's targets, but no term uses them: "
                "set model.weights or model.pretrain_weights c_consistency or c_confident above 0"
            )
        if pretrain_epochs < 0 or adv_warmup_epochs < 0:
            raise ConfigError("model.pretrain_epochs and model.adv_warmup_epochs must be >= 0")
        if not 0.0 <= prob_clip < 0.5:
            raise ConfigError(f"model.prob_clip={prob_clip} must be in [0, 0.5)")
        if c_bn_update not in ("all", "unlabeled"):
            raise ConfigError(f"model.c_bn_update={c_bn_update!r} is not one of ['all', 'unlabeled']")
        if pretrain_time_share is not None and not 0.0 <= pretrain_time_share < 1.0:
            raise ConfigError(f"model.pretrain_time_share={pretrain_time_share} must be in [0, 1) or null")
        if adv_warmup_time_share is not None and not 0.0 < adv_warmup_time_share <= 1.0:
            raise ConfigError(f"model.adv_warmup_time_share={adv_warmup_time_share} must be in (0, 1] or null")
        if pseudo_label_trigger is not None and not 0.0 < pseudo_label_trigger <= 1.0:
            raise ConfigError(f"model.pseudo_label_trigger={pseudo_label_trigger} must be in (0, 1] or null")
        if trigger_samples <= 0 or trigger_samples % num_classes:
            raise ConfigError(
                f"model.trigger_samples={trigger_samples} must be a positive multiple of the {num_classes} classes"
            )
        with_stats = batch_stat_layers(discriminator)
        if with_stats:
            raise ConfigError(
                f"model.discriminator: {type(discriminator).__name__} has batch norm ({with_stats[0]}), whose batch "
                "statistics would change D's verdicts between D's, G's and C's steps; use one without it "
                "(e.g. DCGANDiscriminator norm=spectral or norm=none)"
            )
        self.classifier, self.generator, self.discriminator = classifier, generator, discriminator
        self.augment = augment if augment is not None else nn.Identity()
        self.teacher_augment = teacher_augment if teacher_augment is not None else self.augment
        self.init_evaluation(classifier, num_classes, ema_decay)
        self.latent_dim, self.alpha, self.objective = int(latent_dim), float(alpha), objective
        gen = torch.Generator().manual_seed(grid_seed)
        self.register_buffer(
            "fixed_z", self.sample_z(grid_columns, self.latent_dim, generator=gen, device="cpu").repeat(num_classes, 1)
        )
        self.register_buffer("fixed_y", torch.arange(num_classes).repeat_interleave(grid_columns))
        self.grid_nrow = grid_columns  # one row per class, the same z down each column
        self.register_buffer(
            "g_labels", torch.arange(num_classes).repeat_interleave(generator_batch // num_classes), persistent=False
        )
        self.register_buffer("ramp", torch.ones(()), persistent=False)  # adv_ramp() of the current step
        # running mean of the EMA copy's class probabilities on unlabeled data (distribution alignment)
        self.register_buffer("teacher_marginal", torch.full((num_classes,), 1.0 / num_classes))
        # the schedule's state, saved in checkpoints: the Lightning epoch the game starts at, R_P's first game epoch
        # when the quality trigger set it, whether C's optimizer has been restarted for R_P
        self.pretrain_end: int = int(pretrain_epochs)
        self.pseudo_start: int | None = None
        self.c_optimizer_restarted = False
        self.game_start_share: float | None = None  # share of trainer.max_time passed at the game's first step

    @staticmethod
    def _check_weights(given: Mapping | None, defaults: Mapping, name: str) -> dict[str, float]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"model.{name} has unknown terms {unknown}; known terms are {sorted(defaults)}")
        return {**defaults, **{k: float(v) for k, v in given.items()}}

    # -- schedule ----------------------------------------------------------------------------------------
    @property
    def game_epoch(self) -> int:
        """1-based epoch of the game (0 or less during pre-training)."""
        return self.current_epoch - self.pretrain_end + 1

    def in_pretraining(self, epoch: int) -> bool:
        """Whether Lightning epoch ``epoch`` is one of C's pre-training (the datamodule asks for its streams)."""
        return epoch < self.pretrain_end

    def lr_factor(self, epoch: int) -> float:
        """LR multiplier for Lightning epoch ``epoch``: constant, then ``factor ** (game_epoch - anneal_epoch)``."""
        game_epoch = epoch - self.pretrain_end + 1
        return self.hparams.lr_anneal_factor ** max(0, game_epoch - self.hparams.lr_anneal_epoch)

    def adv_ramp(self) -> float:
        """Warm-up of C's adversarial and pseudo-label weights: 0 -> 1 over ``adv_warmup_time_share`` of the time
        limit from the game's first step, else over ``adv_warmup_epochs`` game epochs."""
        share = self.hparams.adv_warmup_time_share
        if share is not None:
            now = self.time_share()
            if self.game_start_share is None:
                self.game_start_share = now
            return float(min(1.0, max(0.0, (now - self.game_start_share) / share)))
        n = self.hparams.adv_warmup_epochs
        if n == 0:
            return 1.0
        steps_per_epoch = max(1, self.trainer.num_training_batches) if self._trainer is not None else 1
        progress = (
            self.game_epoch - 1
        ) + self.trainer.fit_loop.epoch_loop.batch_progress.current.ready / steps_per_epoch
        return float(min(1.0, max(0.0, progress / n)))

    def configure_optimizers(self):
        opt_d = self.build_optimizer("optimizer_d", self.discriminator)
        opt_g = self.build_optimizer("optimizer_g", self.generator)
        opt_c = self.build_optimizer("optimizer_c", self.classifier)
        opt_pre = self.build_optimizer("optimizer_pretrain", self.classifier)
        scheds = [
            {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(o, self.lr_factor),
                "interval": "epoch",
                "name": f"lr/{net}",
            }
            for o, net in ((opt_d, "d"), (opt_g, "g"), (opt_c, "c"))
        ]
        return [opt_d, opt_g, opt_c, opt_pre], scheds

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for key in ("pretrain_time_share", "adv_warmup_time_share"):
            if self.hparams[key] is not None and self._timer() is None:
                raise ConfigError(f"model.{key} needs trainer.max_time (the share is of that time)")

    def _timer(self) -> Timer | None:
        return (
            next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
            if self._trainer is not None
            else None
        )

    def time_share(self) -> float:
        """Share of ``trainer.max_time`` spent so far (this process's clock; rank 0's decides under DDP)."""
        timer = self._timer()
        assert timer is not None  # setup() refused pretrain_time_share without trainer.max_time
        elapsed, left = timer.time_elapsed("train"), timer.time_remaining("train")
        return elapsed / max(elapsed + (left or 0.0), 1e-9)

    def on_train_epoch_end(self) -> None:
        with warnings.catch_warnings():  # during pre-training the game's optimizers have not stepped yet
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            for sched in self.lr_schedulers():
                sched.step()
        share = self.hparams.pretrain_time_share
        if self.in_pretraining(self.current_epoch):
            if share is not None and self.trainer.strategy.broadcast(self.time_share() >= share, src=0):
                self.pretrain_end = self.current_epoch + 1
                rank_zero_info(
                    f"pre-training ends after epoch {self.current_epoch + 1} ({share:.0%} of the time); the game starts"
                )
            return
        acc = self.trainer.strategy.broadcast(self.ema_conditional_accuracy(), src=0)
        self.log("gen/ema_c_acc", acc, rank_zero_only=True)
        trigger = self.hparams.pseudo_label_trigger
        if trigger is not None and self.pseudo_start is None and acc >= trigger:
            self.pseudo_start = self.game_epoch + 1
            rank_zero_info(
                f"R_P starts at game epoch {self.pseudo_start}: the EMA classifier labels {acc:.1%} of G's samples as their class"
            )

    @torch.no_grad()
    def ema_conditional_accuracy(self) -> float:
        """Share of ``trigger_samples`` class-balanced samples of G (fixed latent codes, G in eval mode) that the EMA
        classifier (eval mode) labels as the class they were drawn for."""
        K, n = self.hparams.num_classes, self.hparams.trigger_samples
        y = torch.arange(K, device=self.device).repeat_interleave(n // K)
        z = self.sample_z(n, self.latent_dim, generator=torch.Generator().manual_seed(2017), device="cpu").to(
            self.device
        )
        modes = self.generator.training, self.ema.training
        self.generator.eval()
        self.ema.eval()
        try:
            hits = sum(
                int((self.ema(self.generator(zb, yb)).argmax(1) == yb).sum())
                for zb, yb in zip(z.split(500), y.split(500))
            )
        finally:
            self.generator.train(modes[0])
            self.ema.train(modes[1])
        return hits / n

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["triple_gan_schedule"] = {
            "pretrain_end": self.pretrain_end,
            "pseudo_start": self.pseudo_start,
            "c_optimizer_restarted": self.c_optimizer_restarted,
            "game_start_share": self.game_start_share,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("triple_gan_schedule", {})
        self.pretrain_end = int(state.get("pretrain_end", self.hparams.pretrain_epochs))
        self.pseudo_start = state.get("pseudo_start")
        self.c_optimizer_restarted = bool(state.get("c_optimizer_restarted", False))
        self.game_start_share = state.get("game_start_share")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before distribution alignment existed load with a uniform running marginal."""
        state_dict.setdefault(
            prefix + "teacher_marginal", torch.full_like(self.teacher_marginal, 1.0 / self.hparams.num_classes)
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- C's regularised classification loss (shared by pre-training and the game) ---------------------
    def classifier_terms(self, x_l, y_l, x_u, logits_u, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """R_L on (augmented) labeled data; entropy, balance [, consistency, confident labels] on C's logits
        ``logits_u`` of the augmented unlabeled images ``x_u``; L2 on C's last layer."""
        eps = self.hparams.prob_clip
        with self.c_stats_frozen():
            logits_l = self.classifier(self.augment(x_l))
        terms = {"c_supervised": losses.supervised(logits_l, y_l, eps)}
        if weights["c_entropy"]:
            terms["c_entropy"] = losses.entropy(logits_u, eps)
        if weights["c_balance"]:
            terms["c_balance"] = losses.class_balance(logits_u, eps or 1e-6)
        if weights["c_consistency"] or weights["c_confident"]:  # one teacher forward for both
            with torch.no_grad(), self.ema_as_teacher():
                target = self.ema(self.teacher_augment(x_u)).float().softmax(1)
                if self.hparams.align_distribution:
                    self.teacher_marginal.lerp_(target.mean(0), 1.0 - self.hparams.align_momentum)
                    target = losses.align_distribution(target, self.teacher_marginal)
            if weights["c_consistency"]:
                terms["c_consistency"] = losses.consistency(logits_u, target)
            if weights["c_confident"]:
                terms["c_confident"] = losses.confident_label(logits_u, target, self.hparams.confidence_threshold)
        if weights["c_l2"]:
            terms["c_l2"] = losses.l2(self.classifier.head.weight)
        return terms

    # -- training --------------------------------------------------------------------------------------
    @property
    def pseudo_label_on(self) -> bool:
        if not self.weights["c_pseudo"]:
            return False
        return self.game_epoch >= min(
            self.hparams.pseudo_label_epoch, self.pseudo_start or self.hparams.pseudo_label_epoch
        )

    def c_stats_frozen(self):
        """For C's forwards other than on its unlabeled batch: with ``c_bn_update=unlabeled`` they leave C's BN
        running statistics in place."""
        return batch_stats_frozen(self.classifier) if self.hparams.c_bn_update == "unlabeled" else nullcontext()

    def stepped_optimizers(self) -> tuple[int, ...]:
        return (3,) if self.game_epoch <= 0 else (0, 1, 2)  # pre-training: C's own optimizer; the game: D, G, C

    def training_step(self, batch, batch_idx: int) -> None:
        logs = self.run_iteration(batch)
        self.log_step_scalars(logs, "train/c/loss" if "train/c/loss" in logs else "pretrain/c/loss", bar="c_loss")

    LOSS_NAMES = {
        "discriminator": "train/d/loss",
        "generator": "train/g/loss",
        "classifier": "train/c/loss",
        "classifier (pre-training)": "pretrain/c/loss",
    }

    def iteration(self, batch, optimizers, graph: IterationGraph | None = None) -> dict[str, torch.Tensor]:
        """One training iteration (pre-training step or game step, then the EMA update) with the given
        optimizers ``[D, G, C, C's pre-training]``; returns every loss term by its logged name. Runs
        through ``graph`` when given."""
        key: object
        if self.game_epoch <= 0:
            key, step = "pretrain", self.pretrain_step
        else:
            self.ramp.fill_(self.adv_ramp())
            key, step = ("game", self.pseudo_label_on), self.game_step
            if self.pseudo_label_on and self.hparams.restart_c_optimizer and not self.c_optimizer_restarted:
                opt_c = optimizers[2]
                getattr(opt_c, "optimizer", opt_c).state.clear()  # fresh Adam moments for C's loss with R_P
                self.c_optimizer_restarted = True

        def run(inputs):
            logs = step(inputs, optimizers)
            self.update_ema()
            return logs

        return run(batch) if graph is None else graph(key, run, batch)

    @staticmethod
    def _named(prefix: str, terms: Mapping[str, torch.Tensor], total: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            **{f"{prefix}/{k.split('_', 1)[1]}": v.detach() for k, v in terms.items()},
            f"{prefix}/loss": total.detach(),
        }

    def pretrain_step(self, batch, optimizers) -> dict[str, torch.Tensor]:
        """C alone: CE on labeled data + entropy and balance on unlabeled data + L2 (official pre-training)."""
        opt_pre = optimizers[3]
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        w = self.pretrain_weights
        terms = self.classifier_terms(x_l, y_l, x_u, self.classifier(self.augment(x_u)), w)
        loss = sum(w[k] * v for k, v in terms.items())
        self.step(opt_pre, loss, "classifier (pre-training)")
        return self._named("pretrain/c", terms, loss)

    def c_pairs(self, x_u: torch.Tensor, logits_u: torch.Tensor):
        """C's fake pairs for D: every (x_u, k) weighted by p_c(k|x_u) (``integrate``) or (x_u, argmax C(x_u))."""
        probs_u, K = logits_u.softmax(1), self.hparams.num_classes
        if self.objective == "integrate":
            return x_u.repeat_interleave(K, 0), torch.arange(K, device=x_u.device).repeat(len(x_u)), probs_u
        return x_u, probs_u.argmax(1), probs_u

    def game_step(self, batch, optimizers) -> dict[str, torch.Tensor]:
        opt_d, opt_g, opt_c, _ = optimizers
        w, a, K, reuse = self.weights, self.alpha, self.hparams.num_classes, self.hparams.reuse_forwards
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        (x_dl, y_dl), (x_du, _) = batch["d_labeled"], batch["d_unlabeled"]
        y_g = self.g_labels

        # C's hard labels for D's unlabeled real pairs and C's (x_u, y) pairs, G's samples. With reuse_forwards they
        # are taken once, with gradients, and G's and C's steps train on them; otherwise (official) D's step has its own.
        with torch.no_grad(), self.c_stats_frozen():
            y_du = self.classifier(x_du).argmax(1)
        with nullcontext() if reuse else torch.no_grad():
            with nullcontext() if reuse else self.c_stats_frozen():
                logits_u = self.classifier(self.augment(x_u))
            x_g = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
        x_c, y_c, probs_u = self.c_pairs(x_u, logits_u)

        # ---- D step: real pairs vs. G's and C's pairs (Eq. 1); D has no batch statistics, so one forward.
        with self.training_only(opt_d, optimizers):
            real_x = torch.cat([x_dl, x_du]) if self.hparams.d_unlabeled_real else x_dl
            real_y = torch.cat([y_dl, y_du]) if self.hparams.d_unlabeled_real else y_dl
            logits = self.discriminator(torch.cat([real_x, x_g.detach(), x_c]), torch.cat([real_y, y_g, y_c]))
            l_real, l_g, l_c = logits.split([len(real_x), len(x_g), len(x_c)])
            d_terms = {
                "d_real": losses.d_real(l_real),
                "d_fake_g": losses.d_fake_g(l_g),
                "d_fake_c": losses.d_fake_c(l_c.view(-1, K), probs_u)
                if self.objective == "integrate"
                else losses.d_fake_c(l_c),
            }
            d_scale = {"d_real": 1.0, "d_fake_g": 1.0 - a, "d_fake_c": a}
            loss_d = sum(w[k] * d_scale[k] * v for k, v in d_terms.items())
            self.step(opt_d, loss_d, "discriminator")

        # ---- G step: fool the updated D on (G(z, y), y).
        with self.training_only(opt_g, optimizers):
            if not reuse:
                x_g = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
            g_adv = losses.g_adversarial(self.discriminator(x_g, y_g))
            loss_g = w["g_adv"] * (1.0 - a) * g_adv
            self.step(opt_g, loss_g, "generator")

        # ---- C step: fool the updated D on (x_u, y ~ C) + R_L + regularisers [+ R_P], the adversarial and
        # pseudo-label weights scaled by the warm-up ramp (a device tensor, so a recorded graph follows it).
        with self.training_only(opt_c, optimizers):
            if not reuse:
                logits_u = self.classifier(self.augment(x_u))
                x_c, y_c, probs_u = self.c_pairs(x_u, logits_u)
            d_c = self.discriminator(x_c, y_c)
            c_terms = {
                "c_adv": losses.c_adversarial(
                    d_c.view(-1, K) if self.objective == "integrate" else d_c, probs_u, self.objective
                )
            }
            c_terms.update(self.classifier_terms(x_l, y_l, x_u, logits_u, w))
            scale = {"c_adv": a * self.ramp, "c_pseudo": self.ramp}
            if self.pseudo_label_on:
                with torch.no_grad():
                    x_p = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
                with self.c_stats_frozen():
                    c_terms["c_pseudo"] = losses.pseudo_label(self.classifier(x_p), y_g, self.hparams.prob_clip)
            loss_c = sum(w[k] * scale.get(k, 1.0) * v for k, v in c_terms.items())
            self.step(opt_c, loss_c, "classifier")
        return {
            **self._named("train/d", d_terms, loss_d),
            **self._named("train/g", {"g_adv": g_adv}, loss_g),
            **self._named("train/c", c_terms, loss_c),
        }

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator(z, y)
