"""The inference-only fast path and dtype choice: same heatmaps as the plain model, training model untouched."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support.models import tiny_config_kwargs
from torch._inductor import config as inductor_config
from transformers import pipeline

import vitpose_hf  # noqa: F401  (registers the task)
import vitpose_hf.inference_optimization as optimization
from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.cli import main
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.inference_optimization import (
    PackedDeconvReLU,
    PackedLinear,
    optimize_for_inference,
    resolve_dtype,
)

needs_onednn = pytest.mark.skipif(
    not optimization.onednn_linear_available(torch.float32), reason="this torch build has no oneDNN linear"
)


def _model(**overrides) -> VitPoseModel:
    torch.manual_seed(0)
    return VitPoseModel(VitPoseConfig(**tiny_config_kwargs(**overrides))).eval()


@needs_onednn
@pytest.mark.parametrize("overrides", [{}, dict(num_experts=3, part_features=8, keypoint_heads=["coco", "aic", "mpii"])])
def test_fast_path_equals_plain_forward(overrides):
    model = _model(**overrides)
    fast = optimize_for_inference(model, "fp32")
    assert any(isinstance(m, PackedLinear) and m.activation == "gelu" for m in fast.modules())
    assert any(isinstance(m, PackedDeconvReLU) for m in fast.modules())  # classic decoder: BatchNorm folded
    pixels = torch.randn(3, 3, 256, 192)
    index = torch.tensor([0, 2, 0]) if overrides else None
    with torch.no_grad():
        expected = model(pixels, dataset_index=index).heatmaps
        got = fast(pixels, dataset_index=index).heatmaps
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_training_model_is_left_as_it_was():
    model = _model().train()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    fast = optimize_for_inference(model, "bf16")
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert not fast.training and fast.dtype == torch.bfloat16 and model.dtype == torch.float32


def test_bf16_fast_path_stays_close():
    model = _model()
    pixels = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        expected = model(pixels).heatmaps
        got = optimize_for_inference(model, torch.bfloat16)(pixels).heatmaps.float()
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_dtype_names_and_auto(monkeypatch):
    assert resolve_dtype("bf16") == resolve_dtype("bfloat16") == resolve_dtype(torch.bfloat16) == torch.bfloat16
    assert resolve_dtype("fp16") == torch.float16 and resolve_dtype(None) == resolve_dtype("fp32") == torch.float32
    monkeypatch.setattr(optimization, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(optimization, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError, match="'int8'"):
        resolve_dtype("int8")


def test_native_bf16_is_read_from_cpu_flags():
    optimization.cpu_has_native_bf16.cache_clear()
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        flags = []
    assert optimization.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_pipeline_dtype_argument():
    model = _model()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8))
    boxes = [[20.0, 30.0, 60.0, 120.0]]
    plain = pipeline("keypoint-detection", model=model, device="cpu", optimize=False)
    fast = pipeline("keypoint-detection", model=model, device="cpu")
    half = pipeline("keypoint-detection", model=model, device="cpu", dtype=torch.bfloat16)
    assert plain.inference_model is model and fast.inference_model.dtype == torch.float32
    assert half.inference_model.dtype == torch.bfloat16 and half.model is model and model.dtype == torch.float32
    np.testing.assert_allclose(fast(image, boxes=boxes)[0]["keypoints"], plain(image, boxes=boxes)[0]["keypoints"],
                               atol=1e-3)
    assert len(half(image, boxes=boxes)[0]["keypoints"]) == 17


def test_cli_dtype(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--dtype" in capsys.readouterr().out
    model = _model()
    model.save_pretrained(tmp_path / "model")
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(tmp_path / "model")
    image = tmp_path / "street.png"
    Image.fromarray(np.zeros((120, 160, 3), dtype=np.uint8)).save(image)
    for dtype in ("fp32", "bf16"):
        assert main(["predict", str(image), "--model", str(tmp_path / "model"), "--output-dir",
                     str(tmp_path / dtype), "--dtype", dtype, "--no-flip"]) == 0
    people = [json.loads((tmp_path / dtype / "street.json").read_text())["people"] for dtype in ("fp32", "bf16")]
    assert len(people[0]) == len(people[1]) == 1
    with pytest.raises(SystemExit):
        main(["predict", str(image), "--dtype", "int8"])


def test_cli_export(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    model = _model()
    model.save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx", "--output-dir", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").is_file() and (tmp_path / "onnx" / "preprocessor_config.json").is_file()
    assert main(["export", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "onnx")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_compiled_fast_path_equals_plain_forward():
    model = _model()
    fast = optimize_for_inference(model, "fp32", compile=True)
    assert not any(isinstance(m, PackedLinear) for m in fast.modules())  # inductor packs the frozen weights itself
    pixels = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        expected = model(pixels).heatmaps
        got = fast(pixels).heatmaps
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert not inductor_config.freezing  # frozen only while this model compiles, not for the rest of the process
