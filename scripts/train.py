"""Train ViTPose with accelerate: the paper's recipe, several keypoint datasets with one head each, distillation.

    accelerate launch scripts/train.py --config configs/coco_vitpose_base.yaml
    python scripts/train.py --config configs/synthetic_cpu.yaml --output-dir outputs/synthetic
    accelerate launch scripts/train.py --config ... --resume-from-checkpoint latest
    python scripts/train.py --config ... --set optimization.learning_rate=1e-3 --set per_device_batch_size=32

The logic lives in `vitpose_hf.training`; see its modules for the config keys.
"""

from __future__ import annotations

import argparse
import sys

from vitpose_hf.training.config import (
    ConfigError,
    add_run_arguments,
    load_training_config,
    reproduce_command,
    run_overrides,
)
from vitpose_hf.training.trainer import NonFiniteLossError, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "YAML recipe (configs/*.yaml)", "optimization.freeze=backbone")
    parser.add_argument("--init-from", help="starting weights (see vitpose_hf.training.initialization)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides, dotted = run_overrides(args)
    if args.init_from is not None:
        dotted.append(f"model.init_from={args.init_from}")
    command = reproduce_command("scripts/train.py", argv if argv is not None else sys.argv[1:])
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
