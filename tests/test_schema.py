"""Each default is written once, in its class's signature: conf/ starts from schemas made from the signatures and
writes only what differs (gan_lightning/schema.py)."""

from __future__ import annotations

import pytest
import yaml
from conftest import CONF, compose_cfg
from omegaconf import MISSING, OmegaConf
from torch import nn

from gan_lightning.config_check import arguments_of
from gan_lightning.models.triple_gan import DEFAULT_WEIGHTS, TripleGAN
from gan_lightning.schema import configurable_classes, defaults_of, schema_of

CLASSES = configurable_classes()
OPTIONS = (
    [[f"model={p.stem}"] for p in sorted((CONF / "model").glob("*.yaml"))]
    + [["model=gan", f"data={p.stem}"] for p in sorted((CONF / "data").glob("*.yaml"))]
    + [["model=triple_gan", f"model/nets={p.stem}"] for p in sorted((CONF / "model" / "nets").glob("*.yaml"))]
    + [[f"experiment={p.stem}"] for p in sorted((CONF / "experiment").glob("*.yaml"))]
)


class Example(nn.Module):
    def __init__(
        self,
        width: int,
        depth: int = 3,
        sizes: tuple[int, ...] = (1, 2),
        act: nn.Module = nn.ReLU(),
        name: str | None = None,
    ):
        super().__init__()


def test_a_schema_has_each_argument_with_its_signature_default():
    node = schema_of(Example)
    assert node["_target_"] == f"{__name__}.Example"
    assert node["depth"] == 3
    assert node["name"] is None
    assert node["sizes"] == [1, 2]
    assert "act" not in node  # a module object is no config value: left out
    config = OmegaConf.create(node)
    assert OmegaConf.is_missing(config, "width")  # no default: the config must give it


def test_subclass_arguments_follow_kwargs_into_the_base():
    # TripleGAN(**plan) forwards batch_sizes, epochs, epoch_length to GameModule
    assert {"batch_sizes", "epochs", "epoch_length", "alpha"} <= set(defaults_of(TripleGAN))
    assert defaults_of(TripleGAN)["weights"] == dict(DEFAULT_WEIGHTS)


def _targets(node, where):
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield where, node
        for key, value in node.items():
            yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


@pytest.mark.parametrize("overrides", OPTIONS, ids=[" ".join(o) for o in OPTIONS])
def test_every_configured_class_shows_all_its_arguments(overrides):
    """Every node of the package's classes carries each argument (so ``key=value`` works for all of them, and
    ``--cfg job`` lists them) and nothing its class does not take."""
    cfg = OmegaConf.to_container(compose_cfg(overrides), resolve=False)
    checked = 0
    for group in ("model", "data"):
        for where, node in _targets(cfg[group], group):
            cls = CLASSES.get(node["_target_"].rsplit(".", 1)[-1])
            if cls is None:
                continue
            if where.endswith(("augment", "teacher_augment")):
                continue  # a value given whole by a preset (a transform), not a node of the group's files
            params, _, _ = arguments_of(cls)
            expected = set(defaults_of(cls))
            assert expected <= set(node), f"{where} ({cls.__name__}) lacks {sorted(expected - set(node))}"
            assert set(node) - {"_target_", "_partial_"} <= set(params), f"{where}: {sorted(set(node) - set(params))}"
            checked += 1
    assert checked >= 2  # the model and its datamodule at least


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "defaults":
                yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, node


def _at(node, key):
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


@pytest.mark.parametrize("group", ["model", "data", "model/nets"])
def test_no_file_repeats_a_default_of_the_class_it_configures(group):
    """The one-source rule: a value a group's YAML writes differs from the one it would get anyway (its class's
    signature default, or for a file that extends another of its group, e.g. cgan.yaml of gan.yaml, that file's)."""
    overrides = {
        "model": lambda stem: [f"model={stem}"],
        "data": lambda stem: ["model=gan", f"data={stem}"],
        "model/nets": lambda stem: ["model=triple_gan", f"model/nets={stem}"],
    }[group]
    repeats = []
    for path in sorted((CONF / group).glob("*.yaml")):
        composed = OmegaConf.to_container(compose_cfg(overrides(path.stem)), resolve=False)
        raw = yaml.safe_load(path.read_text()) or {}
        parents = [d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_" and not d.startswith("/")]
        base = OmegaConf.to_container(compose_cfg(overrides(parents[0])), resolve=False) if parents else None
        section = group.split("/")[0]  # the config node the group's files write (model/nets: model)
        root = composed[section]
        for key, value in _leaves(raw):
            if isinstance(value, str) and value.startswith("${"):
                continue
            if base is not None:
                expected = _at(base[section], key)
            else:
                *parents_of_key, name = key.split(".")
                node = _at(root, ".".join(parents_of_key)) if parents_of_key else root
                cls = CLASSES.get(str(node.get("_target_") if isinstance(node, dict) else None).rsplit(".", 1)[-1])
                expected = defaults_of(cls).get(name, MISSING) if cls is not None else MISSING
            if expected is not MISSING and expected == (list(value) if isinstance(value, tuple) else value):
                repeats.append(f"{path.name}: {key}={value!r} is what it would be anyway")
    assert not repeats, repeats


def test_a_setting_no_file_writes_is_overridable_and_typed_by_its_annotation(tmp_path):
    cfg = compose_cfg(["model=triple_gan", "model.samples.seed=7", "model.weights.c_entropy=0.5"])
    assert cfg.model.samples.seed == 7
    assert cfg.model.weights.c_entropy == 0.5
    assert cfg.model.weights.c_adv == 1.0
    assert cfg.model.discriminator.label_twice_first is True  # ConcatLabelDiscriminator's default, from its signature
    with pytest.raises(Exception, match=r"weights\.c_unknown"):
        compose_cfg(["model=triple_gan", "model.weights.c_unknown=1"])


def test_a_preset_that_swaps_a_network_gets_that_networks_schema():
    maxout = compose_cfg(["model=maxout_gan"]).model.discriminator
    assert maxout._target_.endswith("MaxoutDiscriminator")
    assert maxout.pieces == 5
    assert "sigma_in" not in maxout
    mlp = compose_cfg(["experiment=classifier_mlp_mnist100"]).model.classifier
    assert mlp._target_.endswith("MLPClassifier")
    assert list(mlp.hidden) == [512, 256]
