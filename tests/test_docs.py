"""Every `python -m gan_lightning ...` command written in the README and docs/ composes against today's configs and
passes the checks a run makes before building anything, so the docs cannot drift from the code. Commands the docs
show as bad input must still be refused."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import ROOT, compose_cfg
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from gan_lightning.config_check import check_config
from gan_lightning.errors import ConfigError

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# shown in docs/reliability.md and docs/configuration.md as examples of what is refused with one line
REFUSED = {"model.latent_dim=abc", "+model.latnt_dim=10"}
# the configs docs/extending.md's worked examples add: their commands run in tests/test_extending.py's copy of the tree
EXAMPLES = {"model=hinge_cdcgan", "data=kmnist"}


def commands() -> list[tuple[str, list[str]]]:
    """(where, arguments) of each documented command; continuation lines joined, comments dropped."""
    found = []
    for path in DOCS:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for line_no, line in enumerate(text.splitlines(), 1):
            for match in re.finditer(r"python -m gan_lightning([^`|\n]*)", line):
                rest = re.sub(r"<[^>]*>", "placeholder", match.group(1))  # e.g. outputs/<date>/<time>
                try:
                    words = shlex.split(rest, comments=True)
                except ValueError:  # an unbalanced quote: cut at a comment and retry
                    words = shlex.split(rest.split("  #")[0])
                if not EXAMPLES & set(words):
                    found.append((f"{path.name}:{line_no}", words))
    return found


COMMANDS = commands()


def test_the_docs_hold_the_main_commands():
    args = {" ".join(a) for _, a in COMMANDS}
    assert len(COMMANDS) >= 30
    assert "model=triple_gan data=mnist" in args
    assert "experiment=triple_gan_mnist100_fast" in args


def _single_run(words: list[str]) -> list[str]:
    """A multirun's overrides with each sweep reduced to its first value (what its first job composes)."""
    with_value = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp"}
    flag_values = {i + 1 for i, w in enumerate(words) if w in with_value}  # e.g. `--cfg job --package model`
    overrides = [w for i, w in enumerate(words) if not w.startswith(("-", "[")) and i not in flag_values]
    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            first = next(override.sweep_string_iterator())
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(override.input_line)
    return out


@pytest.mark.parametrize("where,words", COMMANDS, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in COMMANDS])
def test_each_documented_command_composes_and_passes_the_checks(where, words):
    if "--help" in words:
        return
    overrides = _single_run(words)
    refused = REFUSED & set(overrides)
    cfg = compose_cfg(overrides)
    container = OmegaConf.to_container(cfg, resolve=True)
    if refused:
        with pytest.raises(ConfigError):
            check_config(container)
    else:
        check_config(container)


def test_the_table_of_config_groups_lists_every_choice():
    """docs/configuration.md's table of groups names every file of each group in conf/, and nothing else."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([\w/]+)` \| (.*) \|$", text, re.M))
    groups = (
        "task",
        "model",
        "data",
        "model/nets",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "sweep",
        "launcher",
    )
    for group in groups:
        files = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
        named = set(re.findall(r"`(\w+)`", rows[group]))
        assert named == files, (group, sorted(files - named), sorted(named - files))
