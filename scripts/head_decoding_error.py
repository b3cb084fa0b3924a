"""Decoding error per head on ideal heatmaps: every head decoded with UDP, against each head decoded with its own codec.

A head trained without UDP learned the standard crop and MSRA targets. For random people, this script crops each
joint the way a run would (UDP crop for "UDP everywhere", the head's own crop otherwise), renders the heatmap the
head would ideally predict for that crop, decodes it back to the image and reports the error in heatmap pixels:

- "exact": a Gaussian at the joint's exact heatmap position (what a perfectly trained head predicts on average);
- "target": the head's own training target (MSRA targets sit on the rounded position).

    python scripts/head_decoding_error.py [--people 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vitpose_hf.codec import (
    UDP_CODEC,
    HeadCodec,
    build_codec,
    generate_udp_gaussian_heatmaps,
)
from vitpose_hf.configuration_vitpose import VARIANTS, VitPoseConfig
from vitpose_hf.geometry import box_to_center_scale, get_crop_matrix, transform_points
from vitpose_hf.keypoints import get_layout


def decoding_error(
    head_codec: HeadCodec, crop_codec: HeadCodec, decode_codec: HeadCodec, num_keypoints: int, people: int,
    ideal: str, seed: int, input_size: tuple[int, int] = (256, 192), heatmap_size: tuple[int, int] = (64, 48),
) -> torch.Tensor:
    """Per-joint (x, y) errors (heatmap pixels, (N * K, 2)) of a head trained with `head_codec`, cropped with
    `crop_codec`'s crop and decoded with `decode_codec`."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(people, 2, generator=generator, dtype=torch.float64) * 400
    extent = 60 + torch.rand(people, 2, generator=generator, dtype=torch.float64) * 240
    boxes = torch.cat([corner, extent], dim=1)
    joints = corner[:, None] + torch.rand(people, num_keypoints, 2, generator=generator, dtype=torch.float64) * extent[:, None]
    center, size = box_to_center_scale(boxes.to(torch.float64))
    matrices = get_crop_matrix(center, size, None, input_size, udp=crop_codec.udp)
    crop_joints = transform_points(joints, matrices.to(torch.float64)).to(torch.float32)
    trained = build_codec(head_codec, input_size, heatmap_size)
    visible = torch.ones(people, num_keypoints)
    if ideal == "target":
        heatmaps, _ = trained.encode(crop_joints, visible)
    else:
        heatmaps, _ = generate_udp_gaussian_heatmaps(crop_joints, visible, heatmap_size, trained.stride,
                                                     head_codec.sigma)
    decoder = build_codec(decode_codec, input_size, heatmap_size)
    found, _ = decoder.decode_to_image(heatmaps, center, size)
    per_heatmap_pixel = size[:, None, 0:1] / heatmap_size[1]
    return ((found.to(torch.float64) - joints) / per_heatmap_pixel).reshape(-1, 2)


def summary(errors: torch.Tensor) -> str:
    """"Euclidean mean / max (per-axis mean)" of (M, 2) errors."""
    distance = errors.norm(dim=-1)
    return f"{distance.mean():.3f} / {distance.max():.3f} ({errors.abs().mean():.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    heads: dict[tuple[str, str], list[str]] = {}
    for variant in sorted(VARIANTS):
        config = VitPoseConfig.from_variant(variant)
        for head in config.head_names:
            key = (head, repr(config.head_codec(head)))
            heads.setdefault(key, []).append(variant)
    print("Error in heatmap pixels: Euclidean mean / max (per-axis mean).\n")
    print("| head | encoding | variants | ideal | UDP for every head | own codec |")
    print("|---|---|---|---|---|---|")
    for (head, _), variants in heads.items():
        codec = VitPoseConfig.from_variant(variants[0]).head_codec(head)
        k = get_layout(head).num_keypoints
        encoding = "UDP, DARK-UDP" if codec.udp else f"standard, {codec.post_process}, shift_heatmap"
        families = {"vitpose-plus-*" if v.startswith("vitpose-plus") else "vitpose-*" if v.count("-") <= 2 else v
                    for v in variants}
        names = ", ".join(sorted(families))
        for ideal in ("exact", "target"):
            before = decoding_error(codec, UDP_CODEC, UDP_CODEC, k, args.people, ideal, args.seed)
            after = decoding_error(codec, codec, codec, k, args.people, ideal, args.seed)
            print(f"| {head} | {encoding} | {names} | {ideal} | {summary(before)} | {summary(after)} |")


if __name__ == "__main__":
    main()
