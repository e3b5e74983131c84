"""bench/results/README.md indexes the recorded results: every tracked file under bench/results/ (bench/results/runs/
is untracked run output) has a row in its table, every row names a file that exists, and every file is cited by the
README or docs/, or by a cited results file, or was written together with a cited file (the JSON and CSV beside a
cited Markdown table). A citation is a path (`bench/results/profile_cpu.md`), a bare file name (`speed_cuda.md`), a
pattern (`bench/results/experiments_<study>.{json,md}`), a name without its suffix (`--out bench/results/NAME`) or a
folder (`bench/results/analysis/`). Every `bench/results/...` path that the README and docs/ name exists, unless it
is shown as `git show <rev>:bench/results/...`: a file removed from the tree and kept in the repository's history."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath

import pytest
from conftest import ROOT

RESULTS = ROOT / "bench" / "results"
INDEX = RESULTS / "README.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def tracked() -> list[str]:
    """The tracked files under bench/results/, relative to it, without bench/results/runs/ and the index itself."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(["git", "ls-files", "bench/results"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    files = [line.removeprefix("bench/results/") for line in proc.stdout.splitlines()]
    return sorted(f for f in files if not f.startswith("runs/") and f != "README.md")


def index_rows() -> list[str]:
    """The files named in the first column of the index's table, relative to bench/results/."""
    return re.findall(r"^\| `([^`]+)` \|", INDEX.read_text(), flags=re.MULTILINE)


def path_patterns(text: str) -> list[re.Pattern]:
    """Each `bench/results/...` path of a text as a regular expression over paths relative to bench/results/:
    `<...>` and `*` stand for any part of a name, `{a,b}` for either; a folder covers what is under it."""
    found = []
    for token in re.findall(r"bench/results/([^\s`'\"()|]*)", text):
        token = token.rstrip(".,;:")
        if not token or token.startswith("runs/"):  # the folder itself, or untracked run output
            continue
        pattern = re.escape(token)
        pattern = re.sub(r"<[^>]*>", "[^/]+", pattern)
        pattern = pattern.replace(r"\*", "[^/]*")
        pattern = re.sub(r"\\\{([^}]*)\\\}", lambda m: "(?:" + m.group(1).replace(",", "|") + ")", pattern)
        found.append(re.compile(pattern + (".*" if token.endswith("/") else "")))
    return found


def stem(name: str) -> str:
    """A results file's name without its suffix: what the files one command writes have in common."""
    return str(PurePosixPath(name).with_suffix(""))


def folder(name: str) -> str:
    """The folder of a results file, relative to bench/results/ ("" for bench/results/ itself)."""
    parent = str(PurePosixPath(name).parent)
    return "" if parent == "." else parent


def cites(text: str, where: str, name: str) -> bool:
    """Whether a text in the folder ``where`` of bench/results/ (the docs: "") names the results file ``name``."""
    if any(p.fullmatch(name) or p.fullmatch(stem(name)) for p in path_patterns(text)):
        return True
    bare = name.removeprefix(where + "/") if where else name
    return re.search(rf"(?<![\w./-]){re.escape(bare)}(?![\w-])", text) is not None


def cited(files: list[str]) -> set[str]:
    """The files cited by the README or docs/, then by cited results files, with the files written together with them
    (the same name, another suffix), until nothing is added."""
    docs = "\n".join(path.read_text() for path in DOCS)
    found = {f for f in files if cites(docs, "", f)}
    while True:
        sources = [(folder(f), (RESULTS / f).read_text()) for f in found if f.endswith(".md")]
        stems = {stem(f) for f in found}
        more = {f for f in files if stem(f) in stems or any(cites(text, d, f) for d, text in sources)}
        if more <= found:
            return found
        found |= more


def expand_braces(text: str) -> list[str]:
    """A path with `{a,b}` patterns as the paths it stands for, as the shell expands them."""
    match = re.search(r"\{([^{}]*)\}", text)
    if match is None:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    return [path for choice in match.group(1).split(",") for path in expand_braces(head + choice + tail)]


def named_paths(text: str) -> list[str]:
    """The `bench/results/...` paths a text names, relative to bench/results/, braces expanded; skipped: the folder
    itself, untracked run output (runs/), paths with `<...>` placeholders and paths shown as `git show <rev>:...`."""
    found = []
    for match in re.finditer(r"(git show \S+:)?bench/results/([^\s`'\"()|]*)", text):
        token = match.group(2).rstrip(".,;:")
        if match.group(1) or not token or token.startswith("runs/") or "<" in token:
            continue
        found.extend(expand_braces(token))
    return found


def test_every_tracked_results_file_has_a_row_in_the_index():
    missing = sorted(set(tracked()) - set(index_rows()))
    assert not missing, f"bench/results/README.md has no row for: {missing}"


def test_every_row_of_the_index_names_an_existing_file():
    rows = index_rows()
    assert rows, "bench/results/README.md has no table rows"
    assert len(rows) == len(set(rows)), "a file has two rows in bench/results/README.md"
    absent = [f for f in rows if not (RESULTS / f).is_file()]
    assert not absent, f"rows of bench/results/README.md name files that do not exist: {absent}"


def test_every_tracked_results_file_is_cited_by_the_docs():
    files = tracked()
    uncited = sorted(set(files) - cited(files))
    assert not uncited, f"cited by no doc (README.md, docs/*.md) nor by a cited results file: {uncited}"


def test_citations_are_read_as_paths_patterns_names_and_folders():
    text = (
        "`bench/results/experiments_<study>.{json,md}`, `speed_cuda.md`, `--out bench/results/combined`, "
        "`bench/results/analysis/`, results in bench/results/"
    )
    assert cites(text, "", "experiments_gan_loss.json")
    assert cites(text, "", "speed_cuda.md")
    assert not cites(text, "", "speed_cuda_graphs.md")
    assert cites(text, "", "combined.md")
    assert cites(text, "", "analysis/x.json")
    assert not cites(text, "", "profile_cpu.md")  # the bare folder cites nothing
    assert cites("`x.json`", "analysis", "analysis/x.json")
    assert not cites("`docs/speed_cuda.md`", "", "speed_cuda.md")


def test_every_results_path_the_docs_name_exists():
    absent = set()
    for doc in DOCS:
        for path in named_paths(doc.read_text()):
            target = path.rstrip("/")  # a file, a folder, a `*` glob or a name without its suffix (`--out ...`)
            if not any(RESULTS.glob(target)) and not any(RESULTS.glob(target + ".*")):
                absent.add(f"{doc.relative_to(ROOT)}: bench/results/{path}")
    assert not absent, f"docs name results files that are not in the tree (cite `git show <rev>:...`): {sorted(absent)}"


def test_named_paths_expand_braces_and_skip_history():
    text = (
        "`bench/results/speed_{cpu,cuda}.{json,md}`, `bench/results/experiments_<study>.md`, "
        "`git show 3e69798^:bench/results/old_{before,after}.md`, bench/results/runs/x.json"
    )
    assert named_paths(text) == ["speed_cpu.json", "speed_cpu.md", "speed_cuda.json", "speed_cuda.md"]
    assert expand_braces("a_{,mlp_}{b,c}.md") == ["a_b.md", "a_c.md", "a_mlp_b.md", "a_mlp_c.md"]
