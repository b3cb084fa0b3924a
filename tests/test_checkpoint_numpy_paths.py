"""Original checkpoints carry numpy scalars in their `meta`; numpy 1.x and 2.x pickle them under different module
paths (`numpy.core.multiarray` / `numpy._core.multiarray`). Either file must load with either numpy."""

from __future__ import annotations

import io
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vitpose_hf.convert import OriginalCheckpointError, load_original_checkpoint

NEW, OLD = b"numpy._core.multiarray", b"numpy.core.multiarray"


def _save(path: Path) -> Path:
    payload = {"meta": {"epoch": 210, "best_score": np.float64(0.758), "hist": np.arange(3)},
               "state_dict": {"backbone.pos_embed": torch.arange(6.0).reshape(1, 2, 3)}}
    torch.save(payload, path)
    return path


def _rewrite_module_path(path: Path, old: bytes, new: bytes) -> int:
    """Rename the pickled module path in the checkpoint's data.pkl (protocol 2: newline-terminated GLOBAL names)."""
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                count = data.count(old + b"\n")
                data = data.replace(old + b"\n", new + b"\n")
            target.writestr(item, data)
    path.write_bytes(buffer.getvalue())
    return count


def _check(state: dict) -> None:
    assert torch.equal(state["backbone.pos_embed"], torch.arange(6.0).reshape(1, 2, 3))


def test_a_numpy_2_file_loads(tmp_path):
    path = _save(tmp_path / "new.pth")
    assert NEW + b"\n" in zipfile.ZipFile(path).read(f"{path.stem}/data.pkl")  # what this numpy writes
    _check(load_original_checkpoint(path))


def test_a_numpy_1_file_loads(tmp_path):
    path = _save(tmp_path / "old.pth")
    assert _rewrite_module_path(path, NEW, OLD) >= 1
    _check(load_original_checkpoint(path))


def test_on_numpy_1_where_only_the_old_module_imports(tmp_path, monkeypatch):
    new, old = _save(tmp_path / "new.pth"), _save(tmp_path / "old.pth")
    _rewrite_module_path(old, NEW, OLD)
    # numpy 1.26 has no importable numpy._core.multiarray (other packages may leave a bare numpy._core stub).
    monkeypatch.setitem(sys.modules, "numpy._core.multiarray", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's numpy.core shim warns
        _check(load_original_checkpoint(new))
        _check(load_original_checkpoint(old))


def test_other_globals_are_still_refused(tmp_path):
    path = _save(tmp_path / "evil.pth")
    _rewrite_module_path(path, NEW, b"os")  # numpy's name under another module: os._reconstruct must never run
    with pytest.raises(OriginalCheckpointError, match="not a weights-only checkpoint"):
        load_original_checkpoint(path)
