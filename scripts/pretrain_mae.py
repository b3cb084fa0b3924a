"""MAE pre-training of the ViTPose backbone on person crops of COCO-format keypoint datasets (paper Table 2).

    accelerate launch scripts/pretrain_mae.py --config configs/mae_coco_aic_vit_base.yaml
    python scripts/pretrain_mae.py --config configs/mae_synthetic_cpu.yaml --output-dir outputs/mae_synthetic
    accelerate launch scripts/pretrain_mae.py --config ... --resume-from-checkpoint latest
    python scripts/pretrain_mae.py --config ... --set mae.mask_ratio=0.6 --set per_device_batch_size=32

OUTPUT/final is a `VitPoseBackbone` folder: `--init-from OUTPUT/final` of scripts/train.py starts a pose model from
it. OUTPUT/reconstructions/step-*.png shows crops | visible patches | reconstructions at each evaluation.
The logic lives in `vitpose_hf.training.mae`. Exit codes as scripts/train.py.
"""

from __future__ import annotations

import argparse
import sys

from vitpose_hf.training.config import add_run_arguments
from vitpose_hf.training.loop import main_of_script
from vitpose_hf.training.mae import load_mae_config, pretrain


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "YAML recipe (configs/mae_*.yaml)", "mae.decoder_num_hidden_layers=4")
    parser.add_argument("--mask-ratio", type=float)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = [f"mae.mask_ratio={args.mask_ratio}"] if args.mask_ratio is not None else []
    return main_of_script("scripts/pretrain_mae.py", argv, args, load_mae_config, pretrain, extra)


if __name__ == "__main__":
    sys.exit(main())
