#!/usr/bin/env python
"""Convert an original ViTPose checkpoint (mmpose `.pth`) into a verified `save_pretrained` folder / Hub repo.

    python scripts/convert_original_checkpoint.py --checkpoint vitpose-b.pth --variant vitpose-base \
        --output-dir out/vitpose-base --verify [--verify-image 000000000139.jpg] [--push-to-hub ORG/vitpose-base]

Files are read with `torch.load(weights_only=True)`. Every original weight is kept (all heads, all ViTPose+ experts)
unless `--split-dataset NAME` asks for a dense single-dataset model. `--variant auto` reads the architecture from the
key names and shapes; released sizes imply their attention heads, other sizes need `--num-attention-heads`.
The mapping itself lives in `vitpose_hf.convert` (shared with training initialisation); this is a thin wrapper.
"""

from __future__ import annotations

import argparse
import json
import sys

from vitpose_hf import VARIANTS
from vitpose_hf.convert import OriginalCheckpointError, VerificationError, convert_original_checkpoint

# Published reference outputs on COCO val2017 image 000000000139.jpg
# (http://images.cocodataset.org/val2017/000000000139.jpg), with these two person boxes (x, y, width, height), flip
# test and UDP decoding, as published by transformers' convert_vitpose_to_hf.py (values of the original pipeline):
# (person, keypoint, x, y, score). Only usable with the image file (`--verify-image`).
REFERENCE_IMAGE = "000000000139.jpg"
REFERENCE_BOXES = [[412.8, 157.61, 53.05, 138.01], [384.43, 172.21, 15.12, 35.74]]
PUBLISHED_KEYPOINTS = {
    "vitpose-base-simple": [(1, 0, 398.180511, 181.808380, 0.866642594)],
    "vitpose-base": [(1, 0, 398.079130, 181.828120, 0.882352350)],
    "vitpose-base-coco-aic-mpii": [(1, 0, 398.305542, 181.741592, 0.869966745)],
    "vitpose-plus-small": [(1, 0, 398.1597, 181.6902, 0.9051)],
    "vitpose-plus-base": [(1, 0, 398.201294, 181.728302, 0.875046968)],
    "vitpose-plus-large": [(1, 0, 398.1409, 181.7412, 0.8746)],
}


def published_expectations() -> dict[str, dict]:
    """Per variant: the boxes, the dataset (head) and the keypoints to compare, for `check_published_keypoints`."""
    return {
        variant: dict(boxes=REFERENCE_BOXES, dataset="coco", keypoints=keypoints)
        for variant, keypoints in PUBLISHED_KEYPOINTS.items()
    }


def parse_override(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, lists, booleans), else as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--config-override expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="original .pth file")
    parser.add_argument("--variant", default="auto", choices=["auto", *sorted(VARIANTS)],
                        help="released variant, or auto to infer it from the key names and shapes")
    parser.add_argument("--output-dir", help="folder to write (required unless --dry-run)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--split-dataset", help="write a dense single-head model for this dataset (e.g. coco)")
    parser.add_argument("--verify", action="store_true",
                        help="compare with an original-layout forward (and published keypoints with --verify-image)")
    parser.add_argument("--verify-image", help=f"path of COCO val2017 {REFERENCE_IMAGE} for the published-values check")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="create this Hub repo and upload the folder")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--dry-run", action="store_true",
                        help="convert and verify, list what would be written and uploaded, write and upload nothing")
    parser.add_argument("--num-attention-heads", type=int,
                        help="attention heads, for --variant auto on a size that is not a released one")
    parser.add_argument("--config-override", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                        help="VitPoseConfig field overriding the variant (repeatable), e.g. image_size=[384,288]")
    parser.add_argument("--model-card-dir", help="folder with template.md and <variant>.md (default: model_cards/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output_dir is None and not args.dry_run:
        print("error: --output-dir is required (unless --dry-run)", file=sys.stderr)
        return 2
    overrides = dict(args.config_override)
    if args.num_attention_heads is not None:
        overrides["num_attention_heads"] = args.num_attention_heads
    try:
        result = convert_original_checkpoint(
            args.checkpoint, variant=args.variant, output_dir=args.output_dir, overwrite=args.overwrite,
            split_dataset=args.split_dataset, verify=args.verify, push_to_hub=args.push_to_hub, dry_run=args.dry_run,
            config_overrides=overrides, verify_image=args.verify_image,
            published_keypoints=published_expectations() if args.verify_image else None,
            private=args.private, model_card_dir=args.model_card_dir, log=print,
        )
    except (OriginalCheckpointError, VerificationError, OSError, ValueError) as error:  # OSError: disk full too
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"Dry run: nothing written{' or uploaded' if args.push_to_hub else ''}. Files that would be written"
              f"{f' and uploaded to {args.push_to_hub}' if args.push_to_hub else ''}:")
        for name, size in result.files:
            print(f"  {name}  ({size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
