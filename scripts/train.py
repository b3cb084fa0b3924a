"""Train ViTPose with accelerate: the paper's recipe, several keypoint datasets with one head each, distillation.

    accelerate launch scripts/train.py --config configs/coco_vitpose_base.yaml
    python scripts/train.py --config configs/synthetic_cpu.yaml --output-dir outputs/synthetic
    accelerate launch scripts/train.py --config ... --resume-from-checkpoint latest
    python scripts/train.py --config ... --set optimization.learning_rate=1e-3 --set per_device_batch_size=32

The logic lives in `vitpose_hf.training`; see its modules for the config keys.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from vitpose_hf.training.config import ConfigError, load_training_config
from vitpose_hf.training.trainer import NonFiniteLossError, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML recipe (configs/*.yaml)")
    parser.add_argument("--output-dir", help="where checkpoints, logs, eval_results.json and final/ go")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides num_epochs)")
    parser.add_argument("--num-epochs", type=int)
    parser.add_argument("--per-device-batch-size", type=int)
    parser.add_argument("--gradient-accumulation-steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--checkpointing-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--init-from", help="starting weights (see vitpose_hf.training.initialization)")
    parser.add_argument("--resume-from-checkpoint", help="'latest' or a checkpoint folder of this run")
    parser.add_argument("--report-to", help="tracker for accelerate: tensorboard, trackio, wandb, all, ...")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push OUTPUT/final with its model card at the end")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key, dotted (e.g. optimization.freeze=backbone); repeatable")
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
    if args.init_from is not None:
        dotted.append(f"model.init_from={args.init_from}")
    # The command that reproduces the run: resuming does not change the result, so it is left out.
    words = list(argv if argv is not None else sys.argv[1:])
    if "--resume-from-checkpoint" in words:
        at = words.index("--resume-from-checkpoint")
        del words[at:at + 2]
    command = "accelerate launch scripts/train.py " + " ".join(shlex.quote(a) for a in words)
    try:
        config = load_training_config(args.config, overrides, dotted)
        config.check_paths()
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    try:
        train(config, resume_from_checkpoint=args.resume_from_checkpoint, command=command)
    except NonFiniteLossError as error:
        print(f"Training stopped: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
