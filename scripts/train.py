"""Train ViTPose with accelerate: the paper's recipe, several keypoint datasets with one head each, distillation.

    accelerate launch scripts/train.py --config configs/coco_vitpose_base.yaml
    python scripts/train.py --config configs/synthetic_cpu.yaml --output-dir outputs/synthetic
    accelerate launch scripts/train.py --config ... --resume-from-checkpoint latest
    python scripts/train.py --config ... --set optimization.learning_rate=1e-3 --set per_device_batch_size=32

The logic lives in `vitpose_hf.training`; see its modules for the config keys. Exit codes: 2 for a recipe or output
directory that cannot run (nothing trained), 3 for a non-finite loss.
"""

from __future__ import annotations

import argparse
import sys

from vitpose_hf.training.config import add_run_arguments, load_training_config
from vitpose_hf.training.loop import main_of_script
from vitpose_hf.training.supervised import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "YAML recipe (configs/*.yaml)", "optimization.freeze=backbone")
    parser.add_argument("--init-from", help="starting weights (see vitpose_hf.training.initialization)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = [f"model.init_from={args.init_from}"] if args.init_from is not None else []
    return main_of_script("scripts/train.py", argv, args, load_training_config, train, extra)


if __name__ == "__main__":
    sys.exit(main())
