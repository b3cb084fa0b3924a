"""The README and docs/ name files, modules and layers that must exist: a rename that forgets the docs fails here."""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

import pytest
from support.models import tiny_config_kwargs

from vitpose_hf import VitPoseConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Repository paths as the docs write them; globs, brace lists and placeholders are patterns, not files.
PATH = re.compile(r"(?<![\w/.-])(?:scripts|configs|tests|docs|model_cards|src)/[\w./+-]*")
DOTTED = re.compile(r"\bvitpose_hf(?:\.[A-Za-z_]\w*)+")


def _doc_text() -> dict[str, str]:
    return {path.name: path.read_text() for path in DOCS}


def _resolve(dotted: str) -> bool:
    """Whether `dotted` is a module, or an attribute chain of the longest importable module prefix."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_repository_path_named_in_the_docs_exists():
    missing = {
        (doc, match.group(0).rstrip("."))
        for doc, text in _doc_text().items()
        for match in PATH.finditer(text)
        if not (REPO / match.group(0).rstrip(".")).exists()
    }
    assert not missing, f"the docs name paths that do not exist: {sorted(missing)}"


def test_every_vitpose_hf_name_in_the_docs_resolves():
    names = {(doc, match.group(0)) for doc, text in _doc_text().items() for match in DOTTED.finditer(text)}
    assert len(names) > 10  # the pattern still finds the docs' names
    unresolved = sorted((doc, name) for doc, name in names if not _resolve(name))
    assert not unresolved, f"the docs name modules or attributes that do not exist: {unresolved}"


def _layout_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]


def test_layout_lists_every_module_and_package():
    tree = _layout_section().split("```", 2)[1]
    package = REPO / "src" / "vitpose_hf"
    entries = {p.name for p in package.glob("*.py")} | {p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()}
    private = {"__init__.py", "_lazy.py"}
    absent = sorted(name for name in entries - private if name not in tree)
    assert not absent, f"README's Layout does not list {absent}"


def test_layout_layers_match_the_import_contract():
    """The README's "Layers, top to bottom" line is setup.cfg's layers contract, in the same order."""
    line = re.search(r"Layers, top to bottom:(.*?)the bundle\.", _layout_section(), re.S).group(1)
    documented = [sorted(re.findall(r"`(\w+)`", group)) for group in line.split(">") if "`" in group]
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    layers = config["importlinter:contract:layers"]["layers"].strip().splitlines()
    contract = [sorted(name.strip() for name in layer.split("|")) for layer in layers]
    assert documented == contract


@pytest.mark.parametrize("window_size", [4, "8x8", 4.0])
def test_window_size_that_is_not_a_pair_is_refused_by_name(window_size):
    with pytest.raises(ValueError, match="window_size"):
        VitPoseConfig(**tiny_config_kwargs(window_size=window_size, attention_type="window"))
