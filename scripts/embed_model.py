"""Ship a trained model inside the package as the default of the pipeline and of `make demo`.

    python scripts/embed_model.py outputs/synthetic_cpu/final

Copies the `save_pretrained` folder (weights, config, image processor, eval_results.json, recipe, model card) into
`src/vitpose_hf/assets/embedded/` as it is, `auto_map`, `custom_pipelines` and code copies included: the package
loads it with the installed classes, and the folder copied anywhere else still loads with `trust_remote_code=True`.
Refuses folders over 20 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from vitpose_hf.defaults import EMBEDDED_MODEL_DIR

MAX_BYTES = 20 * 2**20
REQUIRED = ("config.json", "model.safetensors", "preprocessor_config.json")


def embed(source: Path, target: Path = EMBEDDED_MODEL_DIR) -> Path:
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} lacks {missing}: pass the final/ folder of a training run.")
    files = [p for p in source.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if size > MAX_BYTES:
        raise ValueError(f"{source} holds {size / 2**20:.1f} MB; the embedded model must stay under 20 MB.")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".embedded-"))
    staging.chmod(0o755)
    for path in files:
        shutil.copy2(path, staging / path.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="OUTPUT/final of a training run")
    args = parser.parse_args(argv)
    target = embed(args.source)
    print(f"Embedded {args.source} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
