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

import torch
from torch import nn

from gan_lightning import losses
from gan_lightning.errors import ConfigError
from gan_lightning.graphs import IterationGraph, make_capturable
from gan_lightning.models.base import ClassifierEvaluation, GameModule, GeneratorGrid

DEFAULT_WEIGHTS = {
    "d_real": 1.0, "d_fake_g": 1.0, "d_fake_c": 1.0, "g_adv": 1.0, "c_adv": 1.0,
    "c_supervised": 1.0, "c_entropy": 0.3, "c_balance": 1e-3, "c_l2": 1e-4, "c_pseudo": 0.1, "c_consistency": 0.0,
    "c_confident": 0.0,
}
PRETRAIN_WEIGHTS = {"c_supervised": 1.0, "c_entropy": 0.3, "c_balance": 0.3, "c_l2": 1e-4, "c_consistency": 0.0,
                    "c_confident": 0.0}


class TripleGAN(GeneratorGrid, ClassifierEvaluation, GameModule):
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
    """

    def __init__(self, classifier: nn.Module, generator: nn.Module, discriminator: nn.Module,
                 optimizer_c: Callable, optimizer_g: Callable, optimizer_d: Callable, optimizer_pretrain: Callable,
                 num_classes: int = 10, latent_dim: int = 100, alpha: float = 0.5, objective: str = "argmax",
                 weights: Mapping[str, float] | None = None, pretrain_weights: Mapping[str, float] | None = None,
                 pretrain_epochs: int = 30, d_unlabeled_real: bool = True, pseudo_label_epoch: int = 300,
                 adv_warmup_epochs: int = 0, lr_anneal_epoch: int = 300, lr_anneal_factor: float = 0.995,
                 generator_batch: int = 200, ema_decay: float = 0.99, grid_columns: int = 10, grid_seed: int = 0,
                 data_range: str = "unit", latent_dist: str = "uniform", channels_last: bool = True,
                 augment: nn.Module | None = None, confidence_threshold: float = 0.95,
                 teacher_augment: nn.Module | None = None, align_distribution: bool = False,
                 align_momentum: float = 0.999) -> None:
        super().__init__(data_range=data_range, latent_dist=latent_dist, channels_last=channels_last)
        # networks and optimizer factories stay out of the hparams (checkpoints load with weights_only)
        self.save_hyperparameters(ignore=["classifier", "generator", "discriminator", "optimizer_c", "optimizer_g", "optimizer_d", "optimizer_pretrain", "augment", "teacher_augment"])
        self.set_optimizer_factories(optimizer_c=optimizer_c, optimizer_g=optimizer_g, optimizer_d=optimizer_d,
                                     optimizer_pretrain=optimizer_pretrain)
        self.weights = self._check_weights(weights, DEFAULT_WEIGHTS, "weights")
        self.pretrain_weights = self._check_weights(pretrain_weights, PRETRAIN_WEIGHTS, "pretrain_weights")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"model.alpha={alpha} must be in [0, 1]")
        if objective not in ("argmax", "integrate"):
            raise ConfigError(f"model.objective={objective!r} is not one of ['argmax', 'integrate']")
        if generator_batch <= 0 or generator_batch % num_classes:
            raise ConfigError(f"model.generator_batch={generator_batch} must be a positive multiple of the {num_classes} classes")
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ConfigError(f"model.confidence_threshold={confidence_threshold} must be in [0, 1]")
        if not 0.0 <= align_momentum < 1.0:
            raise ConfigError(f"model.align_momentum={align_momentum} must be in [0, 1)")
        teacher_terms = ("c_consistency", "c_confident")
        if align_distribution and not any(w[t] for w in (self.weights, self.pretrain_weights) for t in teacher_terms):
            raise ConfigError("model.align_distribution=true changes the EMA copy's targets, but no term uses them: "
                              "set model.weights or model.pretrain_weights c_consistency or c_confident above 0")
        if pretrain_epochs < 0 or adv_warmup_epochs < 0:
            raise ConfigError("model.pretrain_epochs and model.adv_warmup_epochs must be >= 0")
        self.classifier, self.generator, self.discriminator = classifier, generator, discriminator
        self.augment = augment if augment is not None else nn.Identity()
        self.teacher_augment = teacher_augment if teacher_augment is not None else self.augment
        self.init_evaluation(classifier, num_classes, ema_decay)
        self.latent_dim, self.alpha, self.objective = int(latent_dim), float(alpha), objective
        gen = torch.Generator().manual_seed(grid_seed)
        self.register_buffer("fixed_z", self.sample_z(grid_columns, self.latent_dim, generator=gen, device="cpu").repeat(num_classes, 1))
        self.register_buffer("fixed_y", torch.arange(num_classes).repeat_interleave(grid_columns))
        self.grid_nrow = grid_columns  # one row per class, the same z down each column
        self.register_buffer("g_labels", torch.arange(num_classes).repeat_interleave(generator_batch // num_classes), persistent=False)
        self.register_buffer("ramp", torch.ones(()), persistent=False)  # adv_ramp() of the current step
        # running mean of the EMA copy's class probabilities on unlabeled data (distribution alignment)
        self.register_buffer("teacher_marginal", torch.full((num_classes,), 1.0 / num_classes))

    @staticmethod
    def _check_weights(given: Mapping | None, defaults: dict, name: str) -> dict[str, float]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"model.{name} has unknown terms {unknown}; known terms are {sorted(defaults)}")
        return {**defaults, **{k: float(v) for k, v in given.items()}}

    # -- schedule ----------------------------------------------------------------------------------------
    @property
    def game_epoch(self) -> int:
        """1-based epoch of the game (0 or less during pre-training)."""
        return self.current_epoch - self.hparams.pretrain_epochs + 1

    def lr_factor(self, epoch: int) -> float:
        """LR multiplier for Lightning epoch ``epoch``: constant, then ``factor ** (game_epoch - anneal_epoch)``."""
        game_epoch = epoch - self.hparams.pretrain_epochs + 1
        return self.hparams.lr_anneal_factor ** max(0, game_epoch - self.hparams.lr_anneal_epoch)

    def adv_ramp(self) -> float:
        """Warm-up of C's adversarial and pseudo-label weights: 0 -> 1 over ``adv_warmup_epochs`` game epochs."""
        n = self.hparams.adv_warmup_epochs
        if n == 0:
            return 1.0
        steps_per_epoch = max(1, self.trainer.num_training_batches) if self._trainer is not None else 1
        progress = (self.game_epoch - 1) + self.trainer.fit_loop.epoch_loop.batch_progress.current.ready / steps_per_epoch
        return float(min(1.0, max(0.0, progress / n)))

    def configure_optimizers(self):
        opt_d = self.build_optimizer("optimizer_d", self.discriminator)
        opt_g = self.build_optimizer("optimizer_g", self.generator)
        opt_c = self.build_optimizer("optimizer_c", self.classifier)
        opt_pre = self.build_optimizer("optimizer_pretrain", self.classifier)
        scheds = [{"scheduler": torch.optim.lr_scheduler.LambdaLR(o, self.lr_factor), "interval": "epoch", "name": f"lr/{net}"}
                  for o, net in ((opt_d, "d"), (opt_g, "g"), (opt_c, "c"))]
        return [opt_d, opt_g, opt_c, opt_pre], scheds

    def on_train_epoch_end(self) -> None:
        with warnings.catch_warnings():  # during pre-training the game's optimizers have not stepped yet
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            for sched in self.lr_schedulers():
                sched.step()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before distribution alignment existed load with a uniform running marginal."""
        state_dict.setdefault(prefix + "teacher_marginal", torch.full_like(self.teacher_marginal, 1.0 / self.hparams.num_classes))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- C's regularised classification loss (shared by pre-training and the game) ---------------------
    def classifier_terms(self, x_l, y_l, x_u, logits_u, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """R_L on (augmented) labeled data; entropy, balance [, consistency, confident labels] on C's logits
        ``logits_u`` of the augmented unlabeled images ``x_u``; L2 on C's last layer."""
        logits_l = self.classifier(self.augment(x_l))
        terms = {"c_supervised": losses.supervised(logits_l, y_l)}
        if weights["c_entropy"]:
            terms["c_entropy"] = losses.entropy(logits_u)
        if weights["c_balance"]:
            terms["c_balance"] = losses.class_balance(logits_u)
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
    def enable_cuda_graphs(self, warmup: int = 3) -> None:
        """On a CUDA device, record each kind of iteration (pre-training, game, game with R_P) as one CUDA graph
        after ``warmup`` eager iterations and replay it (``trainer.cuda_graphs=true``)."""
        self.iteration_graph = IterationGraph(warmup)

    @property
    def pseudo_label_on(self) -> bool:
        return bool(self.weights["c_pseudo"]) and self.game_epoch >= self.hparams.pseudo_label_epoch

    def training_step(self, batch, batch_idx: int) -> None:
        opts = self.optimizers()
        graph = getattr(self, "iteration_graph", None) if self.device.type == "cuda" else None
        if graph is None:
            logs = self.iteration(batch, opts)
        else:  # the graph holds raw optimizer steps: Lightning's step counter is advanced here
            raw = [o.optimizer for o in opts]
            make_capturable(raw)
            self.bare_steps = True
            try:
                logs = self.iteration(batch, raw, graph)
            finally:
                self.bare_steps = False
            for opt in (opts[3],) if self.game_epoch <= 0 else opts[:3]:
                opt._on_before_step()
                opt._on_after_step()
            self.check_finite({net: logs[f"{prefix}/loss"] for net, prefix in self.LOSS_NAMES.items() if f"{prefix}/loss" in logs})
        if not self.logging_step():
            return
        if graph is not None:  # the next replay overwrites the graph's outputs
            logs = dict(zip(logs, torch.stack(list(logs.values())).unbind()))
        shown = "train/c/loss"  # on the progress bar
        self.log_dict({k: v for k, v in logs.items() if k != shown})
        if shown in logs:
            self.log(shown, logs[shown], prog_bar=True)

    LOSS_NAMES = {"discriminator": "train/d", "generator": "train/g", "classifier": "train/c", "classifier (pre-training)": "pretrain/c"}

    def iteration(self, batch, optimizers, graph: IterationGraph | None = None) -> dict[str, torch.Tensor]:
        """One training iteration (pre-training step or game step, then the EMA update) with the given
        optimizers ``[D, G, C, C's pre-training]``; returns every loss term by its logged name. Runs
        through ``graph`` when given."""
        if self.game_epoch <= 0:
            key, step = "pretrain", self.pretrain_step
        else:
            self.ramp.fill_(self.adv_ramp())
            key, step = ("game", self.pseudo_label_on), self.game_step

        def run(inputs):
            logs = step(inputs, optimizers)
            self.update_ema()
            return logs

        return run(batch) if graph is None else graph(key, run, batch)

    @staticmethod
    def _named(prefix: str, terms: Mapping[str, torch.Tensor], total: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**{f"{prefix}/{k.split('_', 1)[1]}": v.detach() for k, v in terms.items()}, f"{prefix}/loss": total.detach()}

    def pretrain_step(self, batch, optimizers) -> dict[str, torch.Tensor]:
        """C alone: CE on labeled data + entropy and balance on unlabeled data + L2 (official pre-training)."""
        opt_pre = optimizers[3]
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        w = self.pretrain_weights
        terms = self.classifier_terms(x_l, y_l, x_u, self.classifier(self.augment(x_u)), w)
        loss = sum(w[k] * v for k, v in terms.items())
        self.step(opt_pre, loss, "classifier (pre-training)")
        return self._named("pretrain/c", terms, loss)

    def game_step(self, batch, optimizers) -> dict[str, torch.Tensor]:
        opt_d, opt_g, opt_c, _ = optimizers
        w, a, K = self.weights, self.alpha, self.hparams.num_classes
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        (x_dl, y_dl), (x_du, _) = batch["d_labeled"], batch["d_unlabeled"]

        # C's and G's forward passes are taken once: their weights do not change before their own step.
        logits_u = self.classifier(self.augment(x_u))
        probs_u = logits_u.softmax(1)
        with torch.no_grad():
            y_du = self.classifier(x_du).argmax(1)
        y_g = self.g_labels
        x_g = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
        if self.objective == "integrate":  # every (x_u, k) pair, weighted by p_c(k | x_u)
            x_c, y_c = x_u.repeat_interleave(K, 0), torch.arange(K, device=self.device).repeat(len(x_u))
        else:  # (x_u, argmax C(x_u)), weighted by max p_c
            x_c, y_c = x_u, probs_u.argmax(1)

        # ---- D step: real pairs vs. G's and C's pairs (Eq. 1); D has no batch statistics, so one forward.
        with self.training_only(opt_d, optimizers):
            real_x = torch.cat([x_dl, x_du]) if self.hparams.d_unlabeled_real else x_dl
            real_y = torch.cat([y_dl, y_du]) if self.hparams.d_unlabeled_real else y_dl
            logits = self.discriminator(torch.cat([real_x, x_g.detach(), x_c]), torch.cat([real_y, y_g, y_c]))
            l_real, l_g, l_c = logits.split([len(real_x), len(x_g), len(x_c)])
            d_terms = {"d_real": losses.d_real(l_real), "d_fake_g": losses.d_fake_g(l_g),
                       "d_fake_c": losses.d_fake_c(l_c.view(-1, K), probs_u) if self.objective == "integrate" else losses.d_fake_c(l_c)}
            d_scale = {"d_real": 1.0, "d_fake_g": 1.0 - a, "d_fake_c": a}
            loss_d = sum(w[k] * d_scale[k] * v for k, v in d_terms.items())
            self.step(opt_d, loss_d, "discriminator")

        # ---- G step: fool the updated D on (G(z, y), y).
        with self.training_only(opt_g, optimizers):
            g_adv = losses.g_adversarial(self.discriminator(x_g, y_g))
            loss_g = w["g_adv"] * (1.0 - a) * g_adv
            self.step(opt_g, loss_g, "generator")

        # ---- C step: fool the updated D on (x_u, y ~ C) + R_L + regularisers [+ R_P], the adversarial and
        # pseudo-label weights scaled by the warm-up ramp (a device tensor, so a recorded graph follows it).
        with self.training_only(opt_c, optimizers):
            d_c = self.discriminator(x_c, y_c)
            c_terms = {"c_adv": losses.c_adversarial(d_c.view(-1, K) if self.objective == "integrate" else d_c, probs_u, self.objective)}
            c_terms.update(self.classifier_terms(x_l, y_l, x_u, logits_u, w))
            scale = {"c_adv": a * self.ramp, "c_pseudo": self.ramp}
            if self.pseudo_label_on:
                with torch.no_grad():
                    x_p = self.generator(self.sample_z(len(y_g), self.latent_dim), y_g)
                c_terms["c_pseudo"] = losses.pseudo_label(self.classifier(x_p), y_g)
            loss_c = sum(w[k] * scale.get(k, 1.0) * v for k, v in c_terms.items())
            self.step(opt_c, loss_c, "classifier")
        return {**self._named("train/d", d_terms, loss_d), **self._named("train/g", {"g_adv": g_adv}, loss_g),
                **self._named("train/c", c_terms, loss_c)}

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator(z, y)
