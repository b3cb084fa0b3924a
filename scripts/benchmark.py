"""Speed benchmarks of vitpose_hf against its peers, measured in one process and reported as ratios.

    python scripts/benchmark.py                      # every suite, CPU defaults
    python scripts/benchmark.py --suite model --sizes small base --batch-sizes 1 8
    python scripts/benchmark.py --suite model --device cuda --dtypes float32 bfloat16 --compile
    python scripts/benchmark.py --suite peers --sizes base --batch-sizes 1 8      # vs ONNX Runtime, GEMM ceiling

Suites: model (forward crops/s, ours vs transformers' VitPoseForPoseEstimation with identical weights),
processing (pre/post-processing per box vs transformers' VitPoseImageProcessor), data (augmentation + targets,
samples/s per worker), pipeline (end-to-end share of time outside the model forward), attention (training memory
and speed per attention type at 1/8 features), peers (our fp32 fast path, bf16 and the pipeline against ONNX Runtime
and transformers on the same weights, as shares of the machine's GEMM rate; see benchmark_peers.py). Each prints a
markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vitpose_hf import VitPoseConfig, VitPoseModel, export_to_transformers  # noqa: E402


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interleaved_timings(functions: dict[str, callable], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, alternating between them so that background load hits all alike.

    The order is reversed on every other round so that no function always runs first (or always after another).
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    items = list(functions.items())
    for round_index in range(repeats):
        for name, fn in items if round_index % 2 == 0 else items[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_model_benchmark(
    sizes=("small", "base"), batch_sizes=(1, 8), device: str = "cpu", dtypes=("float32",), compile_model: bool = False,
    repeats: int = 5,
) -> list[dict]:
    """Forward crops/s of VitPoseModel and transformers' VitPoseForPoseEstimation sharing the same weights."""
    import tempfile

    from transformers import VitPoseForPoseEstimation

    rows = []
    device = torch.device(device)
    for size in sizes:
        ours = VitPoseModel(VitPoseConfig.from_variant(f"vitpose-{size}")).eval()
        with tempfile.TemporaryDirectory() as folder:
            export_to_transformers(ours, folder)
            theirs = VitPoseForPoseEstimation.from_pretrained(folder).eval()
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            models = {"ours": ours.to(device, dtype), "transformers": theirs.to(device, dtype)}
            variants = {name: model for name, model in models.items()}
            if compile_model:
                variants.update({f"{name}+compile": torch.compile(model) for name, model in models.items()})
            for batch in batch_sizes:
                pixels = torch.randn(batch, 3, 256, 192, device=device, dtype=dtype)

                def forward(model):
                    def call():
                        with torch.inference_mode():
                            model(pixels)
                        _synchronize(device)
                    return call

                seconds = interleaved_timings({name: forward(m) for name, m in variants.items()}, repeats)
                row = {"size": size, "device": device.type, "dtype": dtype_name, "batch": batch}
                for name, value in seconds.items():
                    row[f"{name} crops/s"] = batch / value
                row["ratio ours/transformers"] = seconds["transformers"] / seconds["ours"]
                if compile_model:
                    row["ratio compiled"] = seconds["transformers+compile"] / seconds["ours+compile"]
                rows.append(row)
                print(markdown_table([row]).splitlines()[-1], flush=True)
    return rows


SUITES = {
    "model": None,
    "processing": ("benchmark_processing", "run_processing_benchmark"),
    "data": ("benchmark_data", "run_data_benchmark"),
    "pipeline": ("benchmark_pipeline", "run_pipeline_benchmark"),
    "attention": ("benchmark_attention", "run_attention_benchmark"),
    "peers": ("benchmark_peers", "run_peers_benchmark"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES))
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=["small", "base", "large", "huge"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None, help="default: float32 on CPU, float32 and bfloat16 on CUDA")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dtypes = args.dtypes or (["float32", "bfloat16"] if args.device.startswith("cuda") else ["float32"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")

    for suite in args.suite:
        print(f"\n## {suite}\n", flush=True)
        if suite == "model":
            rows = run_model_benchmark(args.sizes, args.batch_sizes, args.device, dtypes, args.compile, args.repeats)
        else:
            module_name, function_name = SUITES[suite]
            kwargs = {}
            if suite == "peers":  # the suite that compares dtypes and devices takes the shared options
                kwargs = dict(size=args.sizes[-1], batch_sizes=args.batch_sizes, device=args.device, repeats=args.repeats)
            rows = getattr(importlib.import_module(module_name), function_name)(**kwargs)
        if isinstance(rows, dict):
            rows = [rows]
        print("\n" + markdown_table(rows), flush=True)


if __name__ == "__main__":
    main()
