"""trainer=ddp on CPU with 2 processes (gloo): every game trains, metrics are reduced, only rank 0 writes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import needs_mnist, run_cli

from gan_lightning.strategies import average_gradients
from gan_lightning.tbread import read_scalars

pytestmark = pytest.mark.slow  # CLI runs (make test-fast leaves them out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _average_in(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    a, b, unused = (
        torch.zeros(3, requires_grad=True),
        torch.zeros(2, 2, requires_grad=True),
        torch.zeros(1, requires_grad=True),
    )
    a.grad, b.grad = torch.full((3,), float(rank + 1)), torch.full((2, 2), 10.0 * rank)
    average_gradients([a, b, unused])
    out[rank] = (a.grad.clone(), b.grad.clone(), unused.grad)
    dist.destroy_process_group()


def test_average_gradients_across_two_processes():
    out = mp.Manager().dict()
    mp.start_processes(
        _average_in, args=(_free_port(), out), nprocs=2, join=True, start_method="fork"
    )  # no new interpreters
    for rank in (0, 1):
        a, b, unused = out[rank]
        assert torch.equal(a, torch.full((3,), 1.5))
        assert torch.equal(b, torch.full((2, 2), 5.0))
        assert unused is None


def test_average_gradients_is_a_no_op_in_one_process():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([1.0, 2.0])
    average_gradients([p])
    assert torch.equal(p.grad, torch.tensor([1.0, 2.0]))


@needs_mnist
@pytest.mark.parametrize(
    "model",
    [
        [
            "model=triple_gan",
            "model.schedule.pretrain_epochs=1",
            "model.epochs=1",
        ],  # pre-training (C only) then the game (D, G, C)
        ["model=dcgan", "trainer.max_epochs=2"],
    ],
)
def test_ddp_two_processes_on_cpu(model, tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        [
            *model,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2",
            "trainer.log_every_n_steps=1",
        ],
        run,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "__main__.log").read_text() + (run / "train_ddp_process_1.log").read_text()
    assert "MEMBER: 1/2" in log
    assert "MEMBER: 2/2" in log
    scalars = read_scalars(run / "tb")
    if "model=triple_gan" in model:
        assert len(scalars["val/err_ema"]) == 2  # one value per epoch, written once
        assert "train/d/loss" in scalars
        assert "pretrain/c/loss" in scalars
    else:
        assert "train/g/loss" in scalars
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0000.png", "epoch_0001.png"]  # rank 0 only
    assert (run / "checkpoints" / "last.ckpt").is_file()
