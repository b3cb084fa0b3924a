"""Our inference against ONNX Runtime and transformers on the same weights, and against the machine's GEMM ceiling.

    python scripts/benchmark.py --suite peers                           # ViTPose-B, batches 1 and 8, CPU
    python scripts/benchmark.py --suite peers --device cuda             # same table on a GPU (ONNX Runtime if it has CUDA)
    python -m vitpose_hf.benchmarks.peers --accuracy-only               # embedded model: fast path and bf16 vs fp32
    python -m vitpose_hf.benchmarks.peers --batch-sizes 8 1 --no-accuracy   # the speed table alone

Peers, timed alternately in one process on identical weights (random ViTPose weights, 256x192 crops):
  ours fp32 eager      VitPoseModel as trained (the plain forward)
  ours fp32 fast       `optimize_for_inference(model, "fp32")`, what the pipeline runs by default
  ours fp32 compiled   `optimize_for_inference(model, "fp32", compile=True)`: torch.compile with freezing, for a
                       fixed batch size (compiled once per batch size, before timing)
  ours bf16 fast       `optimize_for_inference(model, "bf16")` (CPU: only meaningful with native bf16)
  pipeline fp32/bf16   the whole keypoint-detection pipeline on one image with `batch` boxes, no flip test
  transformers fp32    transformers' VitPoseForPoseEstimation holding the same weights (export_to_transformers)
  onnxruntime fp32     the same weights exported with `export_onnx`, run by ONNX Runtime
Ratios are against ONNX Runtime fp32. The ceiling is the rate of one (1536x768)x(768x3072) product through oneDNN
(CPU) or cuBLAS (GPU) in fp32 and bf16, timed among the peers; "share" is our achieved GFLOP/s (FLOPs per crop,
counted with torch.utils.flop_counter, times crops/s) over that ceiling.

The accuracy part (also printed by default) runs the embedded trained model on a synthetic validation set: the
largest keypoint deviation of the fast fp32 path from the plain forward, and bf16 against fp32 (deviation in pixels
and OKS-AP).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import VitPoseConfig, VitPoseModel
from ..convert.transformers_format import export_to_transformers
from ..inference_optimization import optimize_for_inference
from .common import interleaved_timings, markdown_table

GEMM_SHAPE = (1536, 768, 3072)  # (M, K, N): one ViT-B MLP product, 8 crops of 192 tokens
GEMM_REPEATS = 8  # products per timed call: one ~15 ms product is too short to see the load the peers see


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_product(dtype: torch.dtype, device: torch.device):
    """A call computing `GEMM_REPEATS` times the (M x K) x (K x N) product of `GEMM_SHAPE`: oneDNN with a prepacked
    weight on CPU, cuBLAS on GPU. Timed among the peers, so that it sees the same machine load as they do."""
    m, k, n = GEMM_SHAPE
    torch.manual_seed(0)
    a = torch.randn(m, k, device=device, dtype=dtype)
    weight = torch.randn(n, k, device=device, dtype=dtype)
    if device.type == "cpu":
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, m)

        def product():
            return torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "none")
    else:
        def product():
            return F.linear(a, weight)

    def call():
        for _ in range(GEMM_REPEATS):
            product()
        _synchronize(device)
    return call


GEMM_FLOPS = 2 * GEMM_SHAPE[0] * GEMM_SHAPE[1] * GEMM_SHAPE[2] * GEMM_REPEATS  # per call


def flops_per_crop(model: torch.nn.Module) -> float:
    """Forward FLOPs of one 256x192 crop (matrix products, convolutions and attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    pixels = torch.randn(1, 3, *model.config.image_size, device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(pixels)
    return float(counter.get_total_flops())


def _scene(num_people: int, seed: int = 0) -> tuple[Image.Image, list[list[float]]]:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    boxes = [[float(rng.uniform(0, 500)), float(rng.uniform(0, 200)), 120.0, 260.0] for _ in range(num_people)]
    return image, boxes


def _onnx_session(model: VitPoseModel, folder: str, device: torch.device):
    """An ONNX Runtime session of `model` exported by `export_onnx`, on the matching provider; None where missing."""
    try:
        import onnxruntime as ort

        from ..convert.export import export_onnx
    except ImportError:
        return None
    providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    if not set(providers) <= set(ort.get_available_providers()):
        return None
    path = export_onnx(model, folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=providers)


def run_peers_benchmark(
    size: str = "base", batch_sizes=(1, 8), device: str = "cpu", repeats: int = 7, accuracy: bool = True,
) -> list[dict]:
    """One row per batch size: crops/s of every peer, ratios against ONNX Runtime, shares of the GEMM ceilings."""
    from transformers import VitPoseForPoseEstimation, pipeline

    device = torch.device(device)
    torch.manual_seed(0)
    plain = VitPoseModel(VitPoseConfig.from_variant(f"vitpose-{size}")).eval()
    with tempfile.TemporaryDirectory() as folder:
        export_to_transformers(plain, folder)
        theirs = VitPoseForPoseEstimation.from_pretrained(folder).eval().to(device)
        session = _onnx_session(plain, folder, device)
    plain = plain.to(device)
    fast = {dtype: optimize_for_inference(plain, dtype) for dtype in ("fp32", "bf16")}
    compiled = optimize_for_inference(plain, "fp32", compile=True)
    poses = {
        dtype: pipeline("keypoint-detection", model=plain, device=device, dtype=dtype) for dtype in ("fp32", "bf16")
    }
    flops = flops_per_crop(plain)
    print(f"ViTPose-{size}: {flops / 1e9:.1f} GFLOP per crop", flush=True)

    rows = []
    for batch in batch_sizes:
        pixels = torch.randn(batch, 3, 256, 192, device=device)
        image, boxes = _scene(batch)

        def forward(model, dtype=torch.float32):
            inputs = pixels.to(dtype)

            def call():
                with torch.inference_mode():
                    model(pixel_values=inputs)
                _synchronize(device)
            return call

        peers = {
            "ours fp32 eager": forward(plain),
            "ours fp32 fast": forward(fast["fp32"]),
            "ours fp32 compiled": forward(compiled),
            "ours bf16 fast": forward(fast["bf16"], torch.bfloat16),
            "pipeline fp32": lambda: poses["fp32"](image, boxes=boxes, flip_test=False, batch_size=batch),
            "pipeline bf16": lambda: poses["bf16"](image, boxes=boxes, flip_test=False, batch_size=batch),
            "transformers fp32": forward(theirs),
            "GEMM fp32": gemm_product(torch.float32, device),
            "GEMM bf16": gemm_product(torch.bfloat16, device),
        }
        if session is not None:
            host = pixels.cpu().numpy()
            peers["onnxruntime fp32"] = lambda: session.run(None, {"pixel_values": host})
        seconds = interleaved_timings(peers, repeats)
        ceilings = {dtype: GEMM_FLOPS / seconds.pop(f"GEMM {dtype}") / 1e9 for dtype in ("fp32", "bf16")}
        rate = {name: batch / value for name, value in seconds.items()}
        row = {"size": size, "device": device.type, "threads": torch.get_num_threads(), "batch": batch}
        row.update({f"{name} crops/s": value for name, value in rate.items()})
        reference = rate.get("onnxruntime fp32")
        for name in ("ours fp32 fast", "ours fp32 compiled", "pipeline fp32", "ours bf16 fast", "pipeline bf16",
                     "ours fp32 eager", "transformers fp32"):
            row[f"{name} / ORT"] = rate[name] / reference if reference else None
        for dtype in ("fp32", "bf16"):
            achieved = flops * rate[f"ours {dtype} fast"] / 1e9
            row[f"GEMM {dtype} GFLOP/s"] = ceilings[dtype]
            row[f"ours {dtype} fast GFLOP/s"] = achieved
            row[f"{dtype} share of GEMM"] = achieved / ceilings[dtype]
        row["fp32 compiled share of GEMM"] = flops * rate["ours fp32 compiled"] / 1e9 / ceilings["fp32"]
        rows.append(row)
        print(markdown_table([row]), flush=True)
    if accuracy:
        print("\n" + markdown_table([run_accuracy_check(device=str(device))]), flush=True)
    return rows


def run_accuracy_check(num_images: int = 300, seed: int = 1, device: str = "cpu") -> dict:
    """The embedded trained model on `num_images` synthetic validation images (ground-truth boxes, flip test):
    keypoint deviation of the fast fp32 path from the plain forward, and of bf16 from fp32, plus OKS-AP of each."""
    from ..data.synthetic import generate_synthetic_dataset
    from ..image_processing_vitpose import VitPoseImageProcessor
    from ..defaults import EMBEDDED_MODEL_DIR
    from ..evaluation import coco_keypoint_eval, predict_keypoints
    from ..data import load_keypoint_samples

    plain = VitPoseModel.from_pretrained(EMBEDDED_MODEL_DIR).eval().to(device)
    processor = VitPoseImageProcessor.from_pretrained(EMBEDDED_MODEL_DIR)
    runs = {"plain fp32": plain, "fast fp32": optimize_for_inference(plain, "fp32"),
            "fast bf16": optimize_for_inference(plain, "bf16")}
    with tempfile.TemporaryDirectory() as folder:
        annotations = generate_synthetic_dataset(folder, num_images, seed=seed)
        samples, _ = load_keypoint_samples(annotations, Path(folder) / "images", "coco")
        results = {name: predict_keypoints(model, processor, samples, batch_size=16) for name, model in runs.items()}
        ap = {name: coco_keypoint_eval(str(annotations), found, plain.config.layout(0).oks_sigmas)["AP"]
              for name, found in results.items()}

    def keypoints(name: str) -> np.ndarray:
        return np.asarray([r["keypoints"] for r in results[name]]).reshape(len(samples), -1, 3)[..., :2]

    fast_error = np.linalg.norm(keypoints("fast fp32") - keypoints("plain fp32"), axis=-1)
    bf16_error = np.linalg.norm(keypoints("fast bf16") - keypoints("plain fp32"), axis=-1)
    return {
        "people": len(samples),
        "fast fp32 max px": float(fast_error.max()),
        "bf16 mean px": float(bf16_error.mean()),
        "bf16 p99 px": float(np.percentile(bf16_error, 99)),
        "bf16 max px": float(bf16_error.max()),
        "AP plain fp32": ap["plain fp32"],
        "AP fast fp32": ap["fast fp32"],
        "AP fast bf16": ap["fast bf16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=["small", "base", "large", "huge"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--accuracy-only", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the embedded model's accuracy check")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}", flush=True)
    if args.accuracy_only:
        print(markdown_table([run_accuracy_check(device=args.device)]))
        return
    rows = run_peers_benchmark(args.size, args.batch_sizes, args.device, args.repeats, not args.no_accuracy)
    print("\n" + markdown_table(rows))


if __name__ == "__main__":
    main()
