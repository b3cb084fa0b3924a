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
import shlex
import sys

from vitpose_hf.training.config import ConfigError
from vitpose_hf.training.mae import load_mae_config, pretrain
from vitpose_hf.training.trainer import NonFiniteLossError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML recipe (configs/mae_*.yaml)")
    parser.add_argument("--output-dir", help="where checkpoints, logs, reconstructions/ and final/ go")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides num_epochs)")
    parser.add_argument("--num-epochs", type=int)
    parser.add_argument("--per-device-batch-size", type=int)
    parser.add_argument("--gradient-accumulation-steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--mask-ratio", type=float)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--checkpointing-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--resume-from-checkpoint", help="'latest' or a checkpoint folder of this run")
    parser.add_argument("--report-to", help="tracker for accelerate: tensorboard, trackio, wandb, all, ...")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push OUTPUT/final (the encoder) at the end")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key, dotted (e.g. mae.decoder_num_hidden_layers=4); repeatable")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        "output_dir": args.output_dir, "max_steps": args.max_steps, "num_epochs": args.num_epochs,
        "per_device_batch_size": args.per_device_batch_size, "seed": args.seed, "num_workers": args.num_workers,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "mixed_precision": args.mixed_precision,
        "checkpointing_steps": args.checkpointing_steps, "eval_steps": args.eval_steps,
        "report_to": args.report_to, "push_to_hub": args.push_to_hub,
    }
    dotted = list(args.set)
    if args.learning_rate is not None:
        dotted.append(f"optimization.learning_rate={args.learning_rate}")
    if args.mask_ratio is not None:
        dotted.append(f"mae.mask_ratio={args.mask_ratio}")
    given = argv if argv is not None else sys.argv[1:]
    command = "accelerate launch scripts/pretrain_mae.py " + " ".join(shlex.quote(a) for a in given)
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
