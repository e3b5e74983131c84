"""A checkpoint (or reference network) is data: opening one never imports, calls or writes what its stored config
names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_cfg, run_cli
from omegaconf import OmegaConf

from gan_lightning.checkpoints import build_datamodule, load_game
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import load_reference
from gan_lightning.evaluation.reference import FORMAT
from gan_lightning.safe_build import allowed_targets, check_stored_config

HUBCONF = (
    "from pathlib import Path\nPath(__file__).with_name('RAN').write_text('hubconf ran')\n"
    "def model(**kw):\n    return None\n"
)


def _hub_dir(tmp_path: Path) -> Path:
    """A local torch.hub directory whose hubconf.py leaves a marker file when it is imported."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(HUBCONF)
    return hub


def _real_model_config(overrides=("model=triple_gan",)) -> dict:
    return OmegaConf.to_container(compose_cfg(["data=mnist", *overrides]), resolve=True)


def _crafted(tmp_path: Path, model_cfg: dict, name: str = "crafted.ckpt") -> Path:
    path = tmp_path / name
    torch.save(
        {
            "state_dict": {},
            "run_config": {"model": model_cfg, "data": {"_target_": "gan_lightning.data.MNISTDataModule"}},
        },
        path,
    )
    return path


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=gan"],
        ["model=maxout_gan"],
        ["model=dcgan"],
        ["model=cgan"],
        ["model=cdcgan"],
        ["model=triple_gan"],
        ["model=classifier"],
        ["experiment=triple_gan_mnist100_fast"],
        ["experiment=triple_gan_report"],
    ],
)
def test_every_config_of_the_project_passes_the_check(overrides):
    cfg = _real_model_config(overrides)
    check_stored_config(cfg["model"], "run")
    check_stored_config(cfg["data"], "run")


def test_allowlist_holds_the_project_classes_and_no_functions():
    allowed = allowed_targets()
    assert {
        "gan_lightning.models.triple_gan.TripleGAN",
        "gan_lightning.nets.blocks.RandomAffine",
        "torch.optim.Adam",
        "torch.nn.Sequential",
        "gan_lightning.data.MNISTDataModule",
    } <= allowed
    for refused in (
        "torch.hub.load",
        "torch.save",
        "torch.load",
        "os.system",
        "builtins.exec",
        "gan_lightning.tasks.train.train",
        "subprocess.run",
        "pathlib.Path.write_text",
        "gan_lightning.evaluation.reference.save_reference",
    ):
        assert refused not in allowed


def test_foreign_target_at_top_level_is_refused_before_it_runs(tmp_path):
    hub = _hub_dir(tmp_path)
    ckpt = _crafted(
        tmp_path, {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "model", "source": "local"}
    )
    with pytest.raises(ConfigError, match=r"asks for 'torch\.hub\.load'.*refused"):
        load_game(ckpt)
    assert not (hub / "RAN").exists()


def test_nested_target_inside_a_networks_arguments_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    cfg = _real_model_config()["model"]
    cfg["generator"]["hidden"] = {"_target_": "torch.save", "obj": "overwritten", "f": str(victim)}
    with pytest.raises(ConfigError, match=r"model.generator.hidden._target_ asks for 'torch.save'"):
        load_game(_crafted(tmp_path, cfg))
    assert victim.read_text() == "keep me"


def test_partial_and_args_forms_are_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    cfg = _real_model_config()["model"]
    cfg["augment"] = {
        "_target_": "torch.nn.Sequential",
        "_args_": [{"_target_": "torch.save", "_partial_": True, "obj": 1, "f": str(victim)}],
    }
    with pytest.raises(ConfigError, match=r"augment._args_\[0\]._target_ asks for 'torch.save'"):
        load_game(_crafted(tmp_path, cfg))
    cfg["augment"] = {"_target_": "gan_lightning.nets.blocks.RandomAffine", "degrees": "${oc.env:HOME}"}
    with pytest.raises(ConfigError, match="is an interpolation"):
        load_game(_crafted(tmp_path, cfg))
    cfg["augment"] = {"_target_": ["torch", "save"]}
    with pytest.raises(ConfigError, match="is a list, not a class name"):
        load_game(_crafted(tmp_path, cfg))
    assert not victim.exists()


def test_data_config_of_a_checkpoint_is_checked_too(tmp_path):
    hub = _hub_dir(tmp_path)
    with pytest.raises(ConfigError, match=r"asks for 'torch\.hub\.load'"):
        build_datamodule(
            {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "model", "source": "local"},
            str(tmp_path),
            "crafted",
        )
    assert not (hub / "RAN").exists()


def test_crafted_reference_network_is_refused(tmp_path):
    hub = _hub_dir(tmp_path)
    path = tmp_path / "MNIST.pt"
    torch.save(
        {
            "format": FORMAT,
            "dataset": "MNIST",
            "test_acc": 1.0,
            "image_shape": [1, 28, 28],
            "state_dict": {},
            "network": {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "model", "source": "local"},
        },
        path,
    )
    with pytest.raises(ConfigError, match=r"asks for 'torch\.hub\.load'"):
        load_reference(path, "MNIST")
    assert not (hub / "RAN").exists()


@pytest.mark.parametrize("task", ["sample", "evaluate", "analyze"])
def test_cli_tasks_refuse_a_crafted_checkpoint_with_one_line(task, tmp_path):
    hub = _hub_dir(tmp_path)
    ckpt = _crafted(
        tmp_path, {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "model", "source": "local"}
    )
    proc = run_cli([f"task={task}", f"ckpt_path={ckpt}"], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "asks for 'torch.hub.load'" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (hub / "RAN").exists()


def test_shipped_reference_network_loads_and_matches_its_recorded_md5():
    import hashlib
    import re

    from gan_lightning.evaluation import reference_path

    folder = Path(__file__).resolve().parent.parent / "gan_lightning" / "references"
    rows = re.findall(r"`(\w+)\.pt` \| \w+ \| ([\d.]+) % \| `([0-9a-f]{32})`", (folder / "README.md").read_text())
    assert {"MNIST", "FashionMNIST"} <= {dataset for dataset, _, _ in rows}
    for dataset, accuracy, md5 in rows:
        path = reference_path(folder, dataset)
        assert hashlib.md5(path.read_bytes()).hexdigest() == md5
        net = load_reference(path, dataset)
        assert round(100 * net.test_acc, 2) == float(accuracy)
        assert net.num_classes == 10
    assert Path(OmegaConf.create({"d": "${shipped_references:}"}).d) == folder  # the default of paths.reference_dir
