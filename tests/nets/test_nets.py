"""Networks: output shapes on each dataset's image shape, and clear errors for shapes they cannot take."""

from __future__ import annotations

import pytest
import torch

from gan_lightning.errors import ConfigError
from gan_lightning.nets.blocks import GaussianNoise, Maxout, RandomAffine, RandomErase, RandomTranslate, WNLinear
from gan_lightning.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_lightning.nets.mlp import MaxoutDiscriminator, MLPDiscriminator, MLPGenerator
from gan_lightning.nets.triple_gan import ConcatLabelDiscriminator, ConcatLabelGenerator, ConvClassifier


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("conditional", [0, 10])
def test_generators_and_discriminators_shapes(shape, conditional):
    z, y = torch.randn(4, 16), torch.tensor([0, 3, 9, 1])
    for g, d in [
        (
            MLPGenerator(16, shape, (32,), num_classes=conditional),
            MLPDiscriminator(shape, (32,), num_classes=conditional),
        ),
        (DCGANGenerator(16, shape, 8, num_classes=conditional), DCGANDiscriminator(shape, 8, num_classes=conditional)),
    ]:
        x = g(z, y if conditional else None)
        assert x.shape == (4, *shape)
        assert x.min() >= -1
        assert x.max() <= 1
        assert d(x, y if conditional else None).shape == (4,)
    assert MaxoutDiscriminator(shape, (24,), pieces=3)(torch.rand(4, *shape)).shape == (4,)


def test_dcgan_embedding_labels_change_the_output():
    g = DCGANGenerator(8, (1, 28, 28), 8, num_classes=10, label_mode="embedding").eval()
    d = DCGANDiscriminator((1, 28, 28), 8, num_classes=10, label_mode="embedding").eval()
    z = torch.randn(2, 8).repeat(2, 1)
    y = torch.tensor([0, 0, 5, 5])
    x = g(z, y)
    assert not torch.allclose(x[0], x[2])
    assert not torch.allclose(d(x[:1].repeat(2, 1, 1, 1), torch.tensor([0, 5]))[0], d(x[:1], torch.tensor([5])))


def test_dcgan_rejects_shapes_it_cannot_take():
    with pytest.raises(ConfigError, match=r"DCGANGenerator cannot take images of shape \(1, 30, 30\).*28, 32 or 64"):
        DCGANGenerator(8, (1, 30, 30))
    with pytest.raises(ConfigError, match="DCGANDiscriminator cannot take"):
        DCGANDiscriminator((3, 32, 16))


def test_triple_gan_networks_follow_the_official_shapes():
    c = ConvClassifier((1, 28, 28), 10)
    convs = [m for m in c.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0]) for m in convs] == [(32, 5), (64, 3), (64, 3), (128, 3), (128, 3)]
    assert all(m.bias is None for m in convs)
    assert c(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert c.embed(torch.rand(2, 1, 28, 28)).shape == (2, 128)
    g = ConcatLabelGenerator((1, 28, 28), 10, 100)
    x = g(torch.rand(6, 100), torch.arange(6))
    assert x.shape == (6, 1, 28, 28)
    assert x.min() >= 0
    assert x.max() <= 1
    d = ConcatLabelDiscriminator((1, 28, 28), 10)  # official: y twice into the second layer (before and after noise)
    assert [layer.in_features for layer in d.layers] == [794, 1020, 510, 260, 260]
    assert d.out.in_features == 260
    assert d(x, torch.arange(6)).shape == (6,)
    once = ConcatLabelDiscriminator((1, 28, 28), 10, label_twice_first=False)
    assert [layer.in_features for layer in once.layers] == [794, 1010, 510, 260, 260]


def test_official_discriminator_second_layer_sees_the_label_twice():
    """With the noise off, the second layer's input is [relu(first layer), y, y]: the label weights of both copies
    act."""
    d = ConcatLabelDiscriminator((1, 28, 28), 10, sigma_in=0.0, sigma_hidden=0.0).eval()
    x = torch.rand(2, 1, 28, 28)
    seen = []
    d.layers[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    d(x, torch.tensor([3, 7]))
    h = seen[0]
    assert h.shape == (2, 1020)
    assert torch.equal(h[:, 1000:1010], h[:, 1010:])
    assert h[0, 1003] == 1
    assert h[1, 1017] == 1
    assert h[:, 1000:].sum() == 4


def test_random_numbers_are_the_same_in_any_memory_layout():
    from gan_lightning.nets.blocks import MaskDropout, random_like

    x = torch.randn(64, 8, 12, 12)
    layouts = {
        "contiguous": x,
        "channels_last": x.to(memory_format=torch.channels_last),
        "strided": torch.randn(64, 8, 12, 24)[..., ::2],
    }
    for name, t in layouts.items():
        t.copy_(x)
        for draw in (torch.rand, torch.randn):
            torch.manual_seed(0)
            assert torch.equal(random_like(t, draw), draw(x.shape, generator=torch.Generator().manual_seed(0))), name
        for layer in (MaskDropout(0.5).train(), GaussianNoise(0.3).train()):
            torch.manual_seed(1)
            out = layer(t)
            torch.manual_seed(1)
            assert torch.equal(out, layer(x)), (name, layer)  # a contiguous run's output from the same seed
            if name == "channels_last":
                assert out.is_contiguous(memory_format=torch.channels_last)  # the layout of the input stays
    u = random_like(x, torch.rand, torch.float32)
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(random_like(x).std().item() - 1) < 0.01


def test_discriminator_noise_only_in_training_mode():
    d = ConcatLabelDiscriminator((1, 28, 28), 10)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    d.train()
    assert not torch.equal(d(x, y), d(x, y))
    d.eval()
    assert torch.equal(d(x, y), d(x, y))


def test_blocks():
    wn = WNLinear(5, 3, train_scale=False)
    w = wn.weight * (wn.scale / wn.weight.norm(dim=1)).unsqueeze(1)
    assert torch.allclose(w.norm(dim=1), torch.ones(3))
    assert not wn.scale.requires_grad
    x = torch.randn(2, 5)
    assert torch.allclose(wn(x), x @ w.T + wn.bias, atol=1e-6)
    m = Maxout(4, 2, 3)
    h = m.linear(x[:, :4]).view(2, 2, 3)
    assert torch.equal(m(x[:, :4]), h.max(2).values)
    noise = GaussianNoise(0.5)
    assert noise(torch.zeros(10000)).std().item() == pytest.approx(0.5, rel=0.05)


def test_random_translate_moves_each_image_by_its_own_offset():
    torch.manual_seed(0)
    x = torch.zeros(200, 2, 12, 10)
    x[:, :, 6, 4] = 1.0  # one bright pixel, far enough from the edges that no shift loses it
    shift = RandomTranslate(2)
    out = shift(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == x.shape
    assert torch.equal(out.sum((1, 2, 3)), torch.full((200,), 2.0))  # the pixel moved, in both channels alike
    assert torch.equal(out[:, 0], out[:, 1])
    rows, cols = out[:, 0].amax(2).argmax(1), out[:, 0].amax(1).argmax(1)
    dy, dx = rows - 6, cols - 4
    assert dy.abs().max() == 2
    assert dx.abs().max() == 2
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 25  # ... in every combination, image by image
    shift.eval()
    assert shift(x) is x
    with pytest.raises(ConfigError, match="max_shift=-1"):
        RandomTranslate(-1)


def test_random_affine_moves_each_image_its_own_way_within_the_bounds():
    torch.manual_seed(0)
    x = torch.zeros(300, 1, 28, 28)
    x[:, :, 13:15, 13:15] = 1.0  # a blob at the centre: rotation and scaling keep it there, shifts move it
    shifted = RandomAffine(degrees=0, translate=3, scale=(1, 1))(x)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = shifted[:, 0].sum((1, 2))
    cy, cx = (shifted[:, 0] * ys).sum((1, 2)) / mass - 13.5, (shifted[:, 0] * xs).sum((1, 2)) / mass - 13.5
    assert cy.abs().max() <= 3 + 1e-4
    assert cx.abs().max() <= 3 + 1e-4
    assert cy.abs().max() > 2.5
    assert len(set(cx.round(decimals=2).tolist())) > 200  # one draw per image
    assert torch.allclose(mass, torch.full_like(mass, 4.0), atol=1e-4)  # a shift keeps the blob whole
    bar = torch.zeros(300, 1, 28, 28)
    bar[:, :, 4:24, 13:15] = 1.0  # a vertical bar: rotation tilts it, scaling changes its length
    out = RandomAffine(degrees=20, translate=0, scale=(0.8, 1.2))(bar)
    length = (out[:, 0].sum(2) > 0.5).sum(1).float()  # rows the bar still crosses
    assert length.min() < 20 - 2
    assert length.max() > 20 + 2
    top, bottom = out[:, 0, 6].argmax(1).float(), out[:, 0, 21].argmax(1).float()  # where the bar crosses two rows
    tilt = torch.rad2deg(torch.atan2(top - bottom, torch.tensor(15.0)))
    assert tilt.abs().max() > 12
    assert tilt.abs().max() < 26
    assert (tilt > 5).any()
    assert (tilt < -5).any()
    identity = RandomAffine(degrees=0, translate=0, scale=(1, 1))
    assert torch.allclose(identity(bar), bar, atol=1e-5)
    m = RandomAffine().eval()
    assert m(x) is x
    with pytest.raises(ConfigError, match=r"RandomAffine: .*scale=\[1.2, 0.8\]"):
        RandomAffine(scale=(1.2, 0.8))


def test_random_erase_blanks_one_square_per_image():
    torch.manual_seed(0)
    x = torch.ones(500, 2, 28, 28)
    out = RandomErase(size=6, value=0.0)(x)
    erased = out[:, 0] == 0
    assert torch.equal(out[:, 0], out[:, 1])  # the same square in every channel
    rows, cols = erased.any(2), erased.any(1)
    assert (rows.sum(1) <= 6).all()
    assert (cols.sum(1) <= 6).all()
    assert torch.equal(erased.sum((1, 2)), rows.sum(1) * cols.sum(1))  # ... and one rectangle: rows x columns
    inside = (rows.sum(1) == 6) & (cols.sum(1) == 6)
    assert inside.float().mean() > 0.4
    assert (erased.sum((1, 2)) < 36).any()
    assert len({(int(r.float().argmax()), int(c.float().argmax())) for r, c in zip(rows[inside], cols[inside])}) > 100
    assert RandomErase(size=6).eval()(x) is x
    assert RandomErase(size=0)(x) is x
    with pytest.raises(ConfigError, match=r"RandomErase: size=2\.5 must be a whole number >= 0"):
        RandomErase(2.5)


@pytest.mark.parametrize("p,bits", [(0.3, 0), (0.5, 1), (0.25, 2), (0.75, 2), (0.125, 3)])
def test_mask_dropout_has_torch_dropouts_distribution_and_gradient(p, bits):
    from gan_lightning.nets.blocks import MaskDropout, _mask_bits, make_dropout

    assert _mask_bits(p) == bits  # 0: fp32 uniforms; k: k random bits per element, 31 // k elements per draw
    layer = MaskDropout(p)
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(0)
    out = layer(x)
    torch.manual_seed(0)
    assert torch.equal(out, layer(x))  # the same seed, the same mask
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # keep rate 1 - p
    # independent decisions: elements that share a random draw (neighbours, every 31st) are not correlated,
    # and each position within a draw keeps at the same rate
    flat = kept.flatten().float()
    assert abs((flat[:-1] * flat[1:]).mean().item() - (1 - p) ** 2) < 0.01
    per = max(1, 31 // bits) if bits else 31
    rates = flat[: len(flat) // per * per].view(-1, per).mean(0)
    assert (rates - (1 - p)).abs().max() < 0.03
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))  # survivors scaled by 1 / (1 - p)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d out / d x: the scaled mask
    assert torch.equal(layer.eval()(x), x)  # identity in eval mode
    assert torch.equal(MaskDropout(0.0).train()(x), x)
    xl = torch.randn(8, 16, 6, 6).to(memory_format=torch.channels_last)
    assert MaskDropout(0.5)(xl).is_contiguous(memory_format=torch.channels_last)  # keeps the layout of its input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MaskDropout(0.5)(xl.bfloat16()).dtype == torch.bfloat16
    assert type(make_dropout(0.5, fast=False)) is torch.nn.Dropout
    assert isinstance(make_dropout(0.5), MaskDropout)


def test_the_networks_take_the_dropout_they_are_given():
    from gan_lightning.nets.blocks import MaskDropout
    from gan_lightning.nets.mlp import MaxoutDiscriminator, MLPClassifier, MLPDiscriminator
    from gan_lightning.nets.triple_gan import ConvClassifier

    for cls in (ConvClassifier, MLPDiscriminator, MaxoutDiscriminator, MLPClassifier):
        fast = [m for m in cls((1, 28, 28)).modules() if isinstance(m, torch.nn.Dropout)]
        plain = [m for m in cls((1, 28, 28), fast_dropout=False).modules() if isinstance(m, torch.nn.Dropout)]
        assert fast, cls
        assert all(isinstance(m, MaskDropout) for m in fast), cls
        assert len(plain) == len(fast), cls
        assert not any(isinstance(m, MaskDropout) for m in plain), cls
