"""Plain PyTorch training steps, written as a user would without the framework: the reference the
framework's Lightning runs are measured against in ``bench.speed`` (same networks, same batch sizes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class PlainGAN:
    """GAN / DCGAN / cGAN / cDCGAN: one D update then one G update per batch, each with its own forward."""

    def __init__(self, model, lr: float = 2e-4) -> None:
        self.g, self.d, self.conditional, self.nz = (
            model.generator,
            model.discriminator,
            model.conditional,
            model.latent_dim,
        )
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))

    def step(self, batch) -> None:
        x, y = batch["real"]
        x = x.float() / 127.5 - 1
        n = len(x)
        yf = torch.randint(10, (n,), device=x.device) if self.conditional else None
        args = (lambda lab: (lab,)) if self.conditional else (lambda lab: ())
        fake = self.g(torch.randn(n, self.nz, device=x.device), *args(yf))
        loss_d = bce(self.d(x, *args(y)), 1.0) + bce(self.d(fake.detach(), *args(yf)), 0.0)
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        fake = self.g(torch.randn(n, self.nz, device=x.device), *args(yf))
        loss_g = bce(self.d(fake, *args(yf)), 1.0)
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()


class PlainTripleGAN:
    """The official Triple-GAN iteration as a direct transcription: each player's step computes its own
    forward passes (C on x_u twice, a fresh G sample per step, separate D calls per pair type)."""

    def __init__(self, model, lr: float = 1e-3) -> None:
        self.c, self.g, self.d = model.classifier, model.generator, model.discriminator
        self.opts = [torch.optim.Adam(n.parameters(), lr=lr, betas=(0.5, 0.999)) for n in (self.d, self.g, self.c)]
        self.g_batch = model.hparams.generator_batch

    def step(self, batch) -> None:
        (x_l, y_l), (x_u, _) = batch["c_labeled"], batch["c_unlabeled"]
        (x_dl, y_dl), (x_du, _) = batch["d_labeled"], batch["d_unlabeled"]
        x_l, x_u, x_dl, x_du = (t.float() / 255 for t in (x_l, x_u, x_dl, x_du))
        dev = x_l.device
        y_g = torch.arange(10, device=dev).repeat_interleave(self.g_batch // 10)
        opt_d, opt_g, opt_c = self.opts
        # D
        with torch.no_grad():
            y_du = self.c(x_du).argmax(1)
            p_u = F.softmax(self.c(x_u), 1)
            x_g = self.g(torch.rand(len(y_g), 100, device=dev), y_g)
        d_real = self.d(torch.cat([x_dl, x_du]), torch.cat([y_dl, y_du]))
        loss_d = bce(d_real, 1.0) + 0.5 * bce(self.d(x_g, y_g), 0.0) + 0.5 * bce(self.d(x_u, p_u.argmax(1)), 0.0)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # G
        x_g = self.g(torch.rand(len(y_g), 100, device=dev), y_g)
        loss_g = 0.5 * bce(self.d(x_g, y_g), 1.0)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        # C
        logits_u = self.c(x_u)
        p_u = F.softmax(logits_u, 1)
        d_c = self.d(x_u, p_u.argmax(1))
        adv = (p_u.max(1).values * F.softplus(-d_c)).mean()
        logits_l = self.c(x_l)
        entropy = -(p_u * F.log_softmax(logits_u, 1)).sum(1).mean()
        balance = -torch.log(p_u.mean(0) + 1e-6).mean()
        loss_c = (
            0.5 * adv
            + F.cross_entropy(logits_l, y_l)
            + 0.3 * entropy
            + 1e-3 * balance
            + 1e-4 * self.c.head.weight.pow(2).sum()
        )
        opt_c.zero_grad()
        loss_c.backward()
        opt_c.step()
