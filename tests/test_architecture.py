"""The layout's rules: no import circle, and shared folders carry the model bundle's code only."""

from __future__ import annotations

import sys

import grimp
import pytest
from support.models import tiny_config_kwargs

from vitpose_hf import VitPoseConfig, VitPoseImageProcessor, VitPoseModel

# The flat modules `save_pretrained` may copy: they import only each other, torch, transformers, numpy and pillow.
BUNDLE = {
    "boxes", "codec", "configuration_vitpose", "geometry", "image_processing_vitpose", "images", "keypoints",
    "modeling_vitpose", "pipeline", "window_attention", "inference_optimization", "defaults",
}


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import circles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in graph.modules or not imported.startswith("vitpose_hf"):
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_anywhere_lazy_imports_included():
    # grimp reads every import statement, those inside functions too.
    graph = grimp.build_graph("vitpose_hf", cache_dir=None)
    assert len(graph.modules) > 40
    assert _cycles(graph) == []


def test_bundle_imports_only_its_siblings():
    graph = grimp.build_graph("vitpose_hf", include_external_packages=True, cache_dir=None)
    allowed_external = {"torch", "transformers", "numpy", "PIL", "safetensors", "huggingface_hub"}
    for name in BUNDLE:
        module = f"vitpose_hf.{name}"
        if module not in graph.modules:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("vitpose_hf."):
                assert imported.removeprefix("vitpose_hf.") in BUNDLE, f"{module} imports {imported}"
            else:
                top = imported.split(".")[0]
                assert top in allowed_external or top in sys.stdlib_module_names, f"{module} imports {imported}"


@pytest.fixture
def saved_pipeline_folder(tmp_path):
    from transformers import pipeline

    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).eval()
    pose = pipeline("keypoint-detection", model=model, image_processor=VitPoseImageProcessor(), device="cpu")
    pose.save_pretrained(tmp_path)
    return tmp_path


def test_saved_folder_carries_only_bundle_code(saved_pipeline_folder):
    code = {path.stem for path in saved_pipeline_folder.glob("*.py")}
    assert {"modeling_vitpose", "configuration_vitpose", "image_processing_vitpose", "pipeline"} <= code
    assert code <= BUNDLE, f"not bundle code: {code - BUNDLE}"
    for path in saved_pipeline_folder.glob("*.py"):
        text = path.read_text()
        for outside in ("convert", "training", "evaluation", "data", "cli", "metrics", "_lazy", "visualization"):
            assert f"from .{outside} " not in text and f"from .{outside}." not in text, f"{path.name} -> {outside}"


@pytest.mark.parametrize("package", ["vitpose_hf.convert", "vitpose_hf.data", "vitpose_hf.evaluation",
                                     "vitpose_hf.training"])
def test_every_lazy_export_resolves(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_importing_the_package_or_the_generator_leaves_the_converter_out():
    import subprocess

    code = ("import sys, vitpose_hf.data.synthetic; "
            "print(sorted(m for m in sys.modules if m.startswith(('vitpose_hf.convert', 'vitpose_hf.training'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_tests_share_helpers_through_support_only():
    import re
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    for path in sorted(tests.glob("test_*.py")):
        imports = re.findall(r"^\s*(?:from|import) (test_\w+|conftest)\b", path.read_text(), flags=re.M)
        assert imports == [], f"{path.name} imports {imports}: shared helpers belong in tests/support/"
