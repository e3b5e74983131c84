"""Triple-GAN (Li et al., NIPS 2017) for semi-supervised classification, as in the official MNIST script.

Players: a classifier C (p_c(y|x)), a conditional generator G (p_g(x|y)), a discriminator D(x, y).
One iteration (the paper's Algorithm 1, ``game_step``) = one D step, one G step, one C step, then the EMA update:

    D: real pairs (x_l, y_l) and (x_u', argmax C(x_u'))      vs.   fake pairs (G(z, y), y) and (x_u, y ~ C)
    G: make D call (G(z, y), y) real
    C: make D call (x_u, y ~ C) real + R_L (labeled CE) + entropy + balance + L2 [+ alpha_P * R_P from an epoch]
       [+ consistency with its EMA copy, + its EMA copy's confident hard labels, on augmented inputs: additions,
        off in the official recipe]

Before the game C is pre-trained on labeled + unlabeled data (``pretrain_step``). When each phase starts and ends is
the schedule's (``models.schedule``). Each loss term is logged on its own and has a weight in ``weights`` (0 switches
it off); the adversarial terms are further scaled by alpha / (1 - alpha).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from contextlib import nullcontext
from copy import copy
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import nn

from gan_lightning import losses
from gan_lightning.config_check import PositiveInt, Range, Share, check_arguments, check_multiple
from gan_lightning.lightning_compat import batches_started
from gan_lightning.models.base import GameModule, Optimizers
from gan_lightning.models.evaluation import ClassifierEvaluation
from gan_lightning.models.generation import GeneratorGrid, Samples
from gan_lightning.models.schedule import Schedule
from gan_lightning.models.semi_supervised import ClassifierTerms
from gan_lightning.models.settings import DEFAULT_WEIGHTS, PRETRAIN_WEIGHTS, Additions, Fidelity, check_weights
from gan_lightning.nets.blocks import refuse_batch_statistics


class TripleGAN(ClassifierTerms, GeneratorGrid, ClassifierEvaluation, GameModule):
    """Args:
    classifier, generator, discriminator: the three networks (C(x) -> logits, G(z, y) -> image, D(x, y) -> logit).
    optimizers: the optimizer factory of each player (``d``, ``g``, ``c``) and of C's pre-training (``pretrain``).
    alpha: weight of C's fake pairs in U(C, G, D) (G's get 1 - alpha), Eq. (1).
    objective: C's adversarial gradient, ``integrate`` (exact expectation over classes) or ``argmax``.
    weights: weight of every loss term (``settings.DEFAULT_WEIGHTS``); ``pretrain_weights``: C's pre-training loss.
    schedule: the phases (``models.schedule.Schedule``); fidelity: the departures from the official script
        (``settings.Fidelity``); additions: the semi-supervised additions (``settings.Additions``).
    generator_batch: size of G's batch, class-balanced (generator_batch / num_classes per class).
    ema_decay: decay of the EMA copy of C that is evaluated alongside C (the official 'avg' model: 0.99).
    samples: how G's samples are rendered for the outside (``generation.Samples``): the grid (one row per class), its
        seed, an EMA copy of G (null: G; the game and R_P use G).
    data_range, latent_dist (the MLP networks' groups set ``unit``, ``uniform``) and the data (``GameModule``):
        batch_sizes of the game's four streams, pretrain_batch_sizes of the pre-training's two, epochs of the game
        (one epoch: one pass of C's unlabeled stream).
    """

    # per iteration: C's labeled and unlabeled batches, D's labeled and unlabeled ones
    STREAMS: ClassVar = {"c_labeled": "labeled", "c_unlabeled": "train", "d_labeled": "labeled", "d_unlabeled": "train"}
    PRETRAIN_STREAMS: ClassVar[dict[str, str]] = {"c_labeled": "labeled", "c_unlabeled": "train"}
    EPOCH_LENGTH = "c_unlabeled"
    OPTIMIZERS = ("d", "g", "c", "pretrain")
    MONITOR = "val/err_ema"
    CUDA_GRAPHS_AUTO = True  # pre-training, the game and the game with R_P: one kind at a time
    GRAPH_KINDS = 1

    def __init__(
        self,
        classifier: nn.Module,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizers: Mapping[str, Callable],
        num_classes: Annotated[int, Range(2)] = 10,
        latent_dim: PositiveInt = 100,
        alpha: Share = 0.5,
        objective: Literal["argmax", "integrate"] = "argmax",
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        pretrain_weights: Mapping[str, float] = PRETRAIN_WEIGHTS,
        schedule: Schedule | None = None,
        fidelity: Fidelity | None = None,
        additions: Additions | None = None,
        generator_batch: PositiveInt = 200,
        ema_decay: float = 0.99,
        samples: Samples | None = None,
        **game: Any,
    ) -> None:
        check_arguments(TripleGAN.__init__, locals(), "model")
        super().__init__(**game)
        self.schedule = copy(schedule) if schedule is not None else Schedule()  # this run's: it takes decisions
        self.fidelity, self.additions = fidelity or Fidelity(), additions or Additions()
        if self.plan is not None:  # the datamodule serves each epoch the streams of its phase
            self.plan = replace(self.plan, phases=self.schedule)
        self.samples = samples or Samples()
        self.save_settings(
            schedule=self.schedule, fidelity=self.fidelity, additions=self.additions, samples=self.samples
        )
        self.set_optimizer_factories(optimizers)
        self.weights = check_weights(weights, DEFAULT_WEIGHTS, "weights")
        self.pretrain_weights = check_weights(pretrain_weights, PRETRAIN_WEIGHTS, "pretrain_weights")
        self.additions.check_used(self.weights, self.pretrain_weights)
        check_multiple("model.generator_batch", generator_batch, num_classes, "classes")
        check_multiple("model.schedule.trigger_samples", self.schedule.trigger_samples, num_classes, "classes")
        refuse_batch_statistics(discriminator, "model.discriminator", "D's verdicts between D's, G's and C's steps")
        self.classifier, self.generator, self.discriminator = classifier, generator, discriminator
        self.init_terms(num_classes)
        self.init_evaluation(classifier, num_classes, ema_decay)
        self.latent_dim, self.alpha, self.objective = int(latent_dim), float(alpha), objective
        self.init_grid(self.samples.grid, self.samples.seed, num_classes, self.samples.g_ema_decay)
        g_labels = torch.arange(num_classes).repeat_interleave(generator_batch // num_classes)  # G's batch, balanced
        self.register_buffer("g_labels", g_labels, persistent=False)
        self.register_buffer("ramp", torch.ones(()), persistent=False)  # the adversarial warm-up's weight now

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator(z, y)

    def optimized(self) -> dict[str, nn.Module]:
        return {"d": self.discriminator, "g": self.generator, "c": self.classifier, "pretrain": self.classifier}

    def saved_states(self) -> dict[str, Any]:
        return {"triple_gan_schedule": self.schedule}

    def lr_schedulers_of(self, opt: Optimizers) -> list[dict]:
        """The players' learning rates follow the schedule's annealing (C's pre-training keeps its own)."""
        anneal = [torch.optim.lr_scheduler.LambdaLR(opt[n], self.schedule.lr_factor) for n in "dgc"]
        return [{"scheduler": s, "interval": "epoch", "name": f"lr/{n}"} for s, n in zip(anneal, "dgc")]

    # -- one iteration -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        logs = self.iteration(batch, self.opt)  # recorded as one CUDA graph with trainer.cuda_graphs (acceleration)
        self.log_step_scalars(logs, "train/c/loss" if "train/c/loss" in logs else "pretrain/c/loss", bar="c_loss")

    def iteration_kind(self, opt: Optimizers) -> Hashable:
        """This batch's kind of iteration, after the schedule's decisions for it: pre-training, or the game with or
        without R_P (the warm-up's weight is a device tensor, so a recorded iteration follows it)."""
        epoch = self.current_epoch
        if self.schedule.in_pretraining(epoch):
            return "pretrain"
        trainer = self._trainer
        progress = batches_started(trainer) / max(1, trainer.num_training_batches) if trainer is not None else 0.0
        self.ramp.fill_(self.schedule.adv_ramp(epoch, progress))
        if self.pseudo_labels_on and self.schedule.restart_c_optimizer_now(epoch):  # C's loss with R_P: fresh Adam
            getattr(opt.c, "optimizer", opt.c).state.clear()
        return "game", self.pseudo_labels_on

    def iteration(self, batch, opt: Optimizers, kind: Hashable | None = None) -> dict[str, torch.Tensor]:
        """One training iteration with the optimizers ``opt``: C's pre-training step or the game's D, G and C steps,
        then the EMA update; every loss term by its logged name."""
        kind = self.iteration_kind(opt) if kind is None else kind
        logs = self.pretrain_step(batch, opt) if kind == "pretrain" else self.game_step(batch, opt)
        self.update_ema()
        return logs

    def pretrain_step(self, batch, opt: Optimizers) -> dict[str, torch.Tensor]:
        """C alone: CE on labeled data + entropy and balance on unlabeled data + L2 (official pre-training)."""
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        w = self.pretrain_weights
        terms = self.classifier_terms(x_l, y_l, x_u, self.classifier(self.augment(x_u)), w)
        loss = sum(w[k] * v for k, v in terms.items())
        self.step(opt.pretrain, loss, "classifier (pre-training)")
        return self.named_scalars("pretrain/c", terms, loss)

    def game_step(self, batch, opt: Optimizers) -> dict[str, torch.Tensor]:
        w, a, K, fid = self.weights, self.alpha, self.hparams.num_classes, self.fidelity
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        (x_dl, y_dl), (x_du, _) = batch["d_labeled"], batch["d_unlabeled"]
        y_g = self.g_labels
        integrate = self.objective == "integrate"

        # C's hard labels for D's unlabeled real pairs and C's (x_u, y) pairs, G's samples. With reuse_forwards they are
        # taken once, with gradients, and G's and C's steps train on them; otherwise (official) D's step has its own.
        with torch.no_grad(), self.c_stats_frozen():
            y_du = self.classifier(x_du).argmax(1)
        with nullcontext() if fid.reuse_forwards else torch.no_grad():
            with nullcontext() if fid.reuse_forwards else self.c_stats_frozen():
                logits_u = self.classifier(self.augment(x_u))
            x_g = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
        x_c, y_c, probs_u = self.c_pairs(x_u, logits_u)

        # ---- D step: real pairs vs. G's and C's pairs (Eq. 1); D has no batch statistics, so one forward.
        with self.training_only(opt.d, opt):
            real_x, real_y = (
                (torch.cat([x_dl, x_du]), torch.cat([y_dl, y_du])) if fid.d_unlabeled_real else (x_dl, y_dl)
            )
            logits = self.discriminator(torch.cat([real_x, x_g.detach(), x_c]), torch.cat([real_y, y_g, y_c]))
            l_real, l_g, l_c = logits.split([len(real_x), len(x_g), len(x_c)])
            d_fake_c = losses.d_fake_c(l_c.view(-1, K), probs_u) if integrate else losses.d_fake_c(l_c)
            d_terms = {"d_real": losses.d_real(l_real), "d_fake_g": losses.d_fake_g(l_g), "d_fake_c": d_fake_c}
            d_scale = {"d_real": 1.0, "d_fake_g": 1.0 - a, "d_fake_c": a}
            loss_d = sum(w[k] * d_scale[k] * v for k, v in d_terms.items())
            self.step(opt.d, loss_d, "discriminator")

        # ---- G step: fool the updated D on (G(z, y), y).
        with self.training_only(opt.g, opt):
            if not fid.reuse_forwards:
                x_g = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
            g_adv = losses.g_adversarial(self.discriminator(x_g, y_g))
            loss_g = w["g_adv"] * (1.0 - a) * g_adv
            self.step(opt.g, loss_g, "generator")
            self.update_generator_ema()

        # ---- C step: fool the updated D on (x_u, y ~ C) + R_L + regularisers [+ R_P], the adversarial and
        # pseudo-label weights scaled by the warm-up's ramp.
        with self.training_only(opt.c, opt):
            if not fid.reuse_forwards:
                logits_u = self.classifier(self.augment(x_u))
                x_c, y_c, probs_u = self.c_pairs(x_u, logits_u)
            d_c = self.discriminator(x_c, y_c)
            c_terms = {"c_adv": losses.c_adversarial(d_c.view(-1, K) if integrate else d_c, probs_u, self.objective)}
            c_terms.update(self.classifier_terms(x_l, y_l, x_u, logits_u, w))
            if self.pseudo_labels_on:
                with torch.no_grad():
                    x_p = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
                with self.c_stats_frozen():
                    c_terms["c_pseudo"] = losses.pseudo_label(self.classifier(x_p), y_g, fid.prob_clip)
            scale = {"c_adv": a * self.ramp, "c_pseudo": self.ramp}
            loss_c = sum(w[k] * scale.get(k, 1.0) * v for k, v in c_terms.items())
            self.step(opt.c, loss_c, "classifier")
        return {
            **self.named_scalars("train/d", d_terms, loss_d),
            **self.named_scalars("train/g", {"g_adv": g_adv}, loss_g),
            **self.named_scalars("train/c", c_terms, loss_c),
        }

    # -- the parts of a step ---------------------------------------------------------------------------------
    def c_pairs(self, x_u: torch.Tensor, logits_u: torch.Tensor):
        """C's fake pairs for D: every (x_u, k) weighted by p_c(k|x_u) (``integrate``) or (x_u, argmax C(x_u))."""
        probs_u, K = logits_u.softmax(1), self.hparams.num_classes
        if self.objective == "integrate":
            return x_u.repeat_interleave(K, 0), torch.arange(K, device=x_u.device).repeat(len(x_u)), probs_u
        return x_u, probs_u.argmax(1), probs_u

    @property
    def pseudo_labels_on(self) -> bool:
        return bool(self.weights["c_pseudo"]) and self.schedule.pseudo_labels_on(self.current_epoch)

    # -- the schedule's decisions between epochs -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.schedule.bind(self.time_share_clock())

    def on_train_epoch_end(self) -> None:
        self.step_lr_schedulers()
        epoch, agree = self.current_epoch, lambda value: self.trainer.strategy.broadcast(value, src=0)
        if self.schedule.in_pretraining(epoch):
            self.schedule.end_pretraining_if_due(epoch, agree)
        else:
            acc = agree(self.read_as_their_class(self.ema, self.schedule.trigger_samples))
            self.log("gen/ema_c_acc", acc, rank_zero_only=True)
            self.schedule.start_pseudo_labels_if_due(epoch, acc)
