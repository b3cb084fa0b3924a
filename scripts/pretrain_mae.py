"""MAE pre-training of the ViTPose backbone on person crops of COCO-format keypoint datasets (paper Table 2).

    accelerate launch scripts/pretrain_mae.py --config configs/mae_coco_aic_vit_base.yaml
    python scripts/pretrain_mae.py --config configs/mae_synthetic_cpu.yaml --output-dir outputs/mae_synthetic
    accelerate launch scripts/pretrain_mae.py --config ... --resume-from-checkpoint latest
    python scripts/pretrain_mae.py --config ... --set mae.mask_ratio=0.6 --set per_device_batch_size=32

OUTPUT/final is a `VitPoseBackbone` folder: `--init-from OUTPUT/final` of scripts/train.py starts a pose model from
it. OUTPUT/reconstructions/step-*.png shows crops | visible patches | reconstructions at each evaluation.
The logic lives in `vitpose_hf.training.mae`.
"""

from __future__ import annotations

import argparse
import sys

from vitpose_hf.training.config import ConfigError, add_run_arguments, reproduce_command, run_overrides
from vitpose_hf.training.mae import load_mae_config, pretrain
from vitpose_hf.training.trainer import NonFiniteLossError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "YAML recipe (configs/mae_*.yaml)", "mae.decoder_num_hidden_layers=4")
    parser.add_argument("--mask-ratio", type=float)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides, dotted = run_overrides(args)
    if args.mask_ratio is not None:
        dotted.append(f"mae.mask_ratio={args.mask_ratio}")
    command = reproduce_command("scripts/pretrain_mae.py", argv if argv is not None else sys.argv[1:])
    try:
        config = load_mae_config(args.config, overrides, dotted)
        config.check_paths()
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    try:
        pretrain(config, resume_from_checkpoint=args.resume_from_checkpoint, command=command)
    except NonFiniteLossError as error:
        print(f"Pre-training stopped: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
