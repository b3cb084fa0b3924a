"""Speed benchmarks of vitpose_hf against its peers, measured in one process and reported as ratios.

    python -m vitpose_hf.benchmarks                      # every suite, CPU defaults
    python -m vitpose_hf.benchmarks --suite model --sizes small base --batch-sizes 1 8
    python -m vitpose_hf.benchmarks --suite model --device cuda --dtypes float32 bfloat16 --compile
    python -m vitpose_hf.benchmarks --suite peers --sizes base --batch-sizes 8 1     # vs ONNX Runtime, GEMM ceiling

Suites: model (forward crops/s, ours vs transformers' VitPoseForPoseEstimation with identical weights),
processing (pre/post-processing per box vs transformers' VitPoseImageProcessor), data (augmentation + targets,
samples/s per worker), pipeline (end-to-end share of time outside the model forward), attention (training memory
and speed per attention type at 1/8 features), video (frames/s of batched video tracking vs the pipeline frame by
frame), peers (our fp32 fast path, bf16 and the pipeline against ONNX Runtime and transformers on the same
weights, as shares of the machine's GEMM rate). Each prints a markdown table.
"""

from __future__ import annotations

import argparse
import importlib

import torch

from .common import markdown_table


# suite -> (module of this package, function); each function returns table rows.
SUITES = {
    "model": ("model", "run_model_benchmark"),
    "processing": ("processing", "run_processing_benchmark"),
    "data": ("data", "run_data_benchmark"),
    "pipeline": ("pipeline", "run_pipeline_benchmark"),
    "attention": ("attention", "run_attention_benchmark"),
    "video": ("video", "run_video_benchmark"),
    "peers": ("peers", "run_peers_benchmark"),
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
        module_name, function_name = SUITES[suite]
        run = getattr(importlib.import_module(f".{module_name}", __package__), function_name)
        if suite == "model":
            rows = run(args.sizes, args.batch_sizes, args.device, dtypes, args.compile, args.repeats)
        elif suite == "peers":  # compares dtypes and devices itself; takes the shared options
            rows = run(size=args.sizes[-1], batch_sizes=args.batch_sizes, device=args.device, repeats=args.repeats)
        else:
            rows = run()
        if isinstance(rows, dict):
            rows = [rows]
        print("\n" + markdown_table(rows), flush=True)


if __name__ == "__main__":
    main()
