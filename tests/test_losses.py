"""Every loss term against a direct computation on a tiny hand-made batch."""

from __future__ import annotations

import math

import pytest
import torch

from gan_lightning import losses

LOGITS = torch.tensor([2.0, -1.0, 0.5])
C_LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3]])


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_gan_losses():
    real, fake = losses.d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-2.0]))
    assert real.item() == pytest.approx(-(math.log(sig(1)) + math.log(sig(3))) / 2, rel=1e-6)
    assert fake.item() == pytest.approx(-math.log(1 - sig(-2)), rel=1e-6)
    assert losses.g_loss(torch.tensor([0.5]), "non_saturating").item() == pytest.approx(-math.log(sig(0.5)), rel=1e-6)
    assert losses.g_loss(torch.tensor([0.5]), "minimax").item() == pytest.approx(math.log(1 - sig(0.5)), rel=1e-6)
    with pytest.raises(ValueError, match="minimax"):
        losses.g_loss(LOGITS, "wasserstein")


def test_triple_gan_discriminator_terms():
    expected_real = -sum(math.log(sig(v)) for v in LOGITS.tolist()) / 3
    expected_fake = -sum(math.log(1 - sig(v)) for v in LOGITS.tolist()) / 3
    assert losses.d_real(LOGITS).item() == pytest.approx(expected_real, rel=1e-6)
    assert losses.d_fake_g(LOGITS).item() == pytest.approx(expected_fake, rel=1e-6)
    assert losses.d_fake_c(LOGITS).item() == pytest.approx(expected_fake, rel=1e-6)
    # integrate: every class k for each x, weighted by p_c(k|x)
    probs = torch.softmax(C_LOGITS, 1)
    d_all = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -2.0]])
    direct = sum(probs[i, k].item() * -math.log(1 - sig(d_all[i, k].item())) for i in range(2) for k in range(3)) / 2
    assert losses.d_fake_c(d_all, probs).item() == pytest.approx(direct, rel=1e-6)


def test_triple_gan_adversarial_terms_for_g_and_c():
    assert losses.g_adversarial(LOGITS).item() == pytest.approx(
        -sum(math.log(sig(v)) for v in LOGITS.tolist()) / 3, rel=1e-6
    )
    probs = torch.softmax(C_LOGITS, 1)
    d_hard = torch.tensor([1.5, -0.5])
    direct = sum(probs[i].max().item() * -math.log(sig(d_hard[i].item())) for i in range(2)) / 2
    assert losses.c_adversarial(d_hard, probs, "argmax").item() == pytest.approx(direct, rel=1e-6)
    d_all = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -2.0]])
    direct = sum(probs[i, k].item() * -math.log(sig(d_all[i, k].item())) for i in range(2) for k in range(3)) / 2
    assert losses.c_adversarial(d_all, probs, "integrate").item() == pytest.approx(direct, rel=1e-6)


def test_c_adversarial_gradient_reaches_c_through_its_probabilities():
    logits = C_LOGITS.clone().requires_grad_(True)
    losses.c_adversarial(torch.tensor([1.5, -0.5]), torch.softmax(logits, 1), "argmax").backward()
    assert logits.grad.abs().sum() > 0


def test_classifier_regularisers():
    probs = torch.softmax(C_LOGITS, 1)
    entropy = -sum(p * math.log(p) for row in probs.tolist() for p in row) / 2
    assert losses.entropy(C_LOGITS).item() == pytest.approx(entropy, rel=1e-6)
    mean = probs.mean(0).tolist()
    assert losses.class_balance(C_LOGITS).item() == pytest.approx(-sum(math.log(m) for m in mean) / 3, rel=1e-6)
    targets = torch.tensor([0, 2])
    ce = -(math.log(probs[0, 0].item()) + math.log(probs[1, 2].item())) / 2
    assert losses.supervised(C_LOGITS, targets).item() == pytest.approx(ce, rel=1e-6)
    assert losses.pseudo_label(C_LOGITS, targets).item() == pytest.approx(ce, rel=1e-6)
    assert losses.l2(torch.tensor([[1.0, -2.0], [3.0, 0.0]])).item() == pytest.approx(14.0)
    # balance is minimal (= log K) for a batch that uses every class equally
    assert losses.class_balance(torch.eye(3) * 50).item() == pytest.approx(math.log(3), rel=1e-4)


def test_confident_label_is_the_cross_entropy_on_confident_teacher_labels_only():
    teacher = torch.tensor([[0.96, 0.02, 0.02], [0.5, 0.3, 0.2]])  # only the first is confident at 0.95
    logp = torch.log_softmax(C_LOGITS, 1)
    expected = -logp[0, 0].item() / 2  # the unconfident image counts as 0 in the mean
    assert losses.confident_label(C_LOGITS, teacher, 0.95).item() == pytest.approx(expected, rel=1e-6)
    both = -(logp[0, 0] + logp[1, 0]).item() / 2  # threshold 0.5: both, each at the teacher's argmax
    assert losses.confident_label(C_LOGITS, teacher, 0.5).item() == pytest.approx(both, rel=1e-6)
    assert losses.confident_label(C_LOGITS, teacher, 0.99).item() == 0.0
    logits = C_LOGITS.clone().requires_grad_(True)
    teacher.requires_grad_(True)
    losses.confident_label(logits, teacher, 0.95).backward()
    assert logits.grad[1].abs().sum() == 0
    assert logits.grad[0].abs().sum() > 0
    assert teacher.grad is None


def test_distribution_alignment_by_hand():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    marginal = torch.tensor([0.5, 0.25, 0.25])  # class 0 over-predicted
    # uniform prior: row 0 * (2/3, 4/3, 4/3) = (0.4, 0.4, 0.1333) -> / 0.9333
    row0 = [0.4 / (2.8 / 3), 0.4 / (2.8 / 3), (0.4 / 3) / (2.8 / 3)]
    aligned = losses.align_distribution(probs, marginal)
    assert aligned[0].tolist() == pytest.approx(row0, rel=1e-6)
    assert aligned.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert aligned[1, 0] < probs[1, 0]
    assert aligned[1, 2] > probs[1, 2]
    # a teacher already matching the prior is left as it is; an explicit prior is used as given
    assert torch.allclose(losses.align_distribution(probs, torch.full((3,), 1 / 3)), probs)
    prior = torch.tensor([0.5, 0.25, 0.25])
    assert torch.allclose(losses.align_distribution(probs, marginal, prior), probs)


def test_consistency_is_the_squared_distance_of_probabilities():
    probs = torch.softmax(C_LOGITS, 1)
    target = torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    expected = (
        sum((p - t) ** 2 for row_p, row_t in zip(probs.tolist(), target.tolist()) for p, t in zip(row_p, row_t)) / 2
    )
    assert losses.consistency(C_LOGITS, target).item() == pytest.approx(expected, rel=1e-6)
    assert losses.consistency(C_LOGITS, probs).item() == pytest.approx(0.0, abs=1e-12)
    logits = C_LOGITS.clone().requires_grad_(True)
    target.requires_grad_(True)
    losses.consistency(logits, target).backward()
    assert logits.grad.abs().sum() > 0
    assert target.grad is None
