"""Model forward crops/s: VitPoseModel vs transformers' VitPoseForPoseEstimation sharing the same weights."""

from __future__ import annotations

import torch

from .. import VitPoseConfig, VitPoseModel
from ..convert.transformers_format import export_to_transformers
from .common import interleaved_timings, markdown_table, synchronize


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
                        synchronize(device)
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
