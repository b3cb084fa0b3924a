"""Export to torch.export programs and ONNX (checked with onnxruntime), tiny random models, dynamic batch."""

import json

import numpy as np
import pytest
import torch
from support.models import tiny_config_kwargs

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.convert.export import export_onnx, export_program

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

MULTI_HEAD = dict(num_experts=3, part_features=8, keypoint_heads=["coco", "aic", "mpii"])


def _model(**overrides) -> VitPoseModel:
    torch.manual_seed(0)
    return VitPoseModel(VitPoseConfig(**tiny_config_kwargs(**overrides))).eval()


def _pixels(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 256, 192)


@pytest.fixture(scope="module")
def single_head_onnx(tmp_path_factory):
    model = _model()
    folder = tmp_path_factory.mktemp("single")
    model.save_pretrained(folder / "model")
    return model, export_onnx(folder / "model", folder / "onnx")


def test_onnx_equals_eager_at_any_batch(single_head_onnx):
    model, path = single_head_onnx
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        pixels = _pixels(batch)
        with torch.no_grad():
            expected = model(pixels).heatmaps.numpy()
        (heatmaps,) = session.run(["heatmaps"], {"pixel_values": pixels.numpy()})
        np.testing.assert_allclose(heatmaps, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_onnx_folder_has_the_processor_and_config(single_head_onnx):
    _, path = single_head_onnx
    processor = json.loads((path.parent / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 256, "width": 192}
    assert (path.parent / "config.json").is_file()


def test_torch_export_has_a_dynamic_batch():
    model = _model()
    program = export_program(model)
    for batch in (1, 5):
        pixels = _pixels(batch)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(pixels), model(pixels).heatmaps, rtol=1e-5, atol=1e-6)


def test_one_head_of_a_multi_head_model(tmp_path):
    model = _model(**MULTI_HEAD)
    pixels = _pixels(2)
    with torch.no_grad():
        expected = model(pixels, dataset_index="mpii").heatmaps
    program = export_program(model, dataset="mpii")
    torch.testing.assert_close(program.module()(pixels), expected, rtol=1e-5, atol=1e-6)
    session = ort.InferenceSession(str(export_onnx(model, tmp_path, dataset="mpii")))
    (heatmaps,) = session.run(["heatmaps"], {"pixel_values": pixels.numpy()})
    assert heatmaps.shape == tuple(expected.shape)  # MPII's 16 keypoints
    np.testing.assert_allclose(heatmaps, expected.numpy(), rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert model.traced_dataset_index is None  # the eager model is left as it was


def test_tracing_a_multi_head_model_needs_its_head():
    model = _model(**MULTI_HEAD)
    with pytest.raises(ValueError, match="traced_dataset_index"):
        torch.export.export(model, (_pixels(2),))
    with pytest.raises(ValueError, match="Unknown dataset"):
        export_program(model, dataset="crowdpose")


def test_eager_errors_are_unchanged():
    model = _model(**MULTI_HEAD)
    with pytest.raises(ValueError, match="out of range"):
        model(_pixels(2), dataset_index=torch.tensor([0, 7]))
