"""Training memory and speed per attention type at 1/8 features (the shape of paper Table 4), and memory by input size.

    python -m vitpose_hf.benchmarks.attention                     # CPU defaults: ViT-S cut to 4 layers, batch 2, ~3 min
    python -m vitpose_hf.benchmarks.attention --device cuda --size base --depth 12 --batch-size 32 --dtype bfloat16 \\
        --input-sizes 256x192 384x288 576x432

One training step is forward + backward of the heatmap loss (no optimizer: its state is the same for every attention
type). Peak memory is what that step adds on top of the model: on CUDA the allocator's peak, on CPU the rise of the
process's peak resident memory, each configuration in a fresh process so that no allocator cache hides anything.
`eager` materialises every attention matrix, as the paper's implementation did; `sdpa` uses fused kernels, which
keep full attention's memory linear in the tokens too, so there the window types mainly save compute.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .common import markdown_table
# Rows of paper Table 4: label -> config overrides (the ViTDet mix gets its interval from the depth).
ATTENTION_SETUPS: dict[str, dict] = {
    "full": dict(attention_type="full"),
    "window": dict(attention_type="window"),
    "window+shift": dict(attention_type="shift_window"),
    "window+pool": dict(attention_type="pool_window"),
    "window+shift+pool": dict(attention_type="shift_pool_window"),
    "window+full (ViTDet)": dict(attention_type="window", full_attention_interval=None),
}


def _process_memory_kib() -> tuple[int, int]:
    """(current, peak) resident memory of this process in KiB."""
    try:
        status = Path("/proc/self/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        return rss, hwm
    except (OSError, AttributeError):  # not Linux: ru_maxrss is the peak (bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak // 1024 if sys.platform == "darwin" else peak
        return peak, peak


def _reset_peak_memory() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak restarts from the current resident size
    except OSError:
        pass


def measure_training_step(setup: dict) -> dict:
    """Peak memory (MiB) and crops/s of forward + backward for one configuration, in this process."""
    from .. import VitPoseConfig, VitPoseModel

    device, dtype = torch.device(setup["device"]), getattr(torch, setup["dtype"])
    torch.manual_seed(0)
    config = VitPoseConfig.from_variant(f"vitpose-{setup['size']}", **setup["config"])
    config._attn_implementation = setup["implementation"]
    model = VitPoseModel(config).to(device, dtype).train()
    height, width = config.image_size
    pixels = torch.randn(setup["batch_size"], 3, height, width, device=device, dtype=dtype)
    labels = torch.rand(setup["batch_size"], 17, *config.heatmap_size, device=device, dtype=dtype)

    parameters = {param.untyped_storage().data_ptr() for param in model.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def step(count_saved: bool = False) -> None:
        if count_saved:  # the activations autograd keeps for backward, each storage once: allocator-independent
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
                loss = model(pixels, labels=labels).loss
        else:
            loss = model(pixels, labels=labels).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(count_saved=True)
        peak = torch.cuda.max_memory_allocated() - before
    else:
        _reset_peak_memory()
        before, _ = _process_memory_kib()
        step(count_saved=True)
        peak = (_process_memory_kib()[1] - before) * 1024
    times = []
    for _ in range(setup["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "peak_mib": peak / 2**20, "saved_mib": sum(saved.values()) / 2**20,
        "crops_per_s": setup["batch_size"] / statistics.median(times),
    }


def _measure_isolated(setup: dict) -> dict:
    """On CPU, each configuration runs in a fresh interpreter: freed memory kept by malloc would hide later peaks."""
    if setup["device"] != "cpu":
        return measure_training_step(setup)
    result = subprocess.run(
        [sys.executable, "-m", __name__, "--worker", json.dumps(setup)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {setup}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_attention_benchmark(
    size: str = "small", depth: int = 4, batch_size: int = 2, image_size: str = "256x192",
    window_size: tuple[int, int] = (8, 8), implementations: tuple[str, ...] = ("eager", "sdpa"),
    input_sizes: tuple[str, ...] = ("256x192", "384x288"), input_size_setups: tuple[str, ...] = ("full", "window+shift+pool"),
    device: str | None = None, dtype: str = "float32", repeats: int = 3,
) -> list[dict]:
    """Rows of two sweeps at 1/8 features (patch stride 8): every attention setup at `image_size` for each kernel,
    then `input_size_setups` over `input_sizes` with the first kernel. `vs full` is peak memory relative to full
    attention under the same kernel and input."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    full_interval = max(2, depth // 4)  # ViTDet: full attention in a quarter of the blocks (every 3rd of 12)
    plans = [("attention", name, kernel, image_size) for kernel in implementations for name in ATTENTION_SETUPS]
    plans += [
        ("input size", name, implementations[0], size_name)
        for size_name in input_sizes if size_name != image_size for name in input_size_setups
    ]
    rows, full_peaks = [], {}
    for sweep, name, kernel, size_name in plans:
        overrides = {k: (full_interval if v is None else v) for k, v in ATTENTION_SETUPS[name].items()}
        config = dict(
            num_hidden_layers=depth, patch_stride=8, image_size=size_name, window_size=list(window_size),
            drop_path_rate=0.0, **overrides,
        )
        setup = dict(size=size, config=config, implementation=kernel, batch_size=batch_size, device=device,
                     dtype=dtype, repeats=repeats)
        result = _measure_isolated(setup)
        height, width = (int(side) for side in size_name.split("x"))
        label = name.replace("(ViTDet)", f"every {full_interval}") if "ViTDet" in name else name
        if name == "full":
            full_peaks[(kernel, size_name)] = result["peak_mib"]
        full_peak = full_peaks.get((kernel, size_name))
        rows.append({
            "sweep": sweep, "attention": label, "kernel": kernel, "input": size_name,
            "tokens": f"{height // 8}x{width // 8}", "peak MiB": round(result["peak_mib"], 1),
            "saved for backward MiB": round(result["saved_mib"], 1),
            "vs full": round(result["peak_mib"] / full_peak, 2) if full_peak else "-",
            "crops/s": round(result["crops_per_s"], 2),
        })
        print(f"  {sweep}: {label} / {kernel} / {size_name}: {rows[-1]['peak MiB']} MiB, "
              f"{rows[-1]['crops/s']} crops/s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="small", choices=["small", "base", "large", "huge"])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", default="256x192")
    parser.add_argument("--window-size", type=int, nargs=2, default=[8, 8])
    parser.add_argument("--kernels", nargs="+", default=["eager", "sdpa"], choices=["eager", "sdpa"])
    parser.add_argument("--input-sizes", nargs="+", default=["256x192", "384x288"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_training_step(json.loads(args.worker))))
        return
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, ViT-{args.size[0].upper()} "
          f"cut to {args.depth} layers, batch {args.batch_size}, {args.dtype}, window {args.window_size}, stride 8\n")
    rows = run_attention_benchmark(
        args.size, args.depth, args.batch_size, args.image_size, tuple(args.window_size), tuple(args.kernels),
        tuple(args.input_sizes), device=device, dtype=args.dtype, repeats=args.repeats,
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
