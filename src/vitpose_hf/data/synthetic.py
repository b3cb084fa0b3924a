"""A synthetic COCO-format pose dataset: articulated stick-and-capsule people on textured backgrounds.

It exists so that training, evaluation and the demo can be exercised end to end without downloading COCO. The
images are made to be *learnable* by a small model in minutes: every annotated joint carries a marker of its own
colour (the same colour for the same joint in every image and every layout), the torso and head give the body
an orientation, left limbs are drawn in blue tones and right limbs in red tones, and a face (eyes and mouth) or
hair tells front-facing people from back-facing ones, which is what makes left and right resolvable once images
are mirrored by the flip augmentation. The difficulty comes from real pose-estimation nuisances: random poses
within plausible joint angles, body proportions, limb widths and colours, textured and cluttered backgrounds,
several people per image, occlusion by other people and by objects, and truncation at the image border.

Visibility flags follow COCO: 2 visible, 1 inside the image but hidden (behind a person or an object), 0 not
labelled (outside the image, or a face point of someone seen from the back; stored as x = y = v = 0). They are
read from an id buffer drawn with the same primitives as the image, so they always match the pixels.

    python -m vitpose_hf.data.synthetic --output-dir data/synthetic --num-images 1000 --layout coco --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..keypoints import KeypointLayout, get_layout
from .figures import body_point_names, coco_category, render_scene


def generate_synthetic_dataset(
    output_dir: str | Path,
    num_images: int,
    layout: str | KeypointLayout = "coco",
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    max_people: int = 3,
    image_format: str = "jpg",
    **scene_kwargs,
) -> Path:
    """Write `num_images` images to `output_dir/images/` and their COCO keypoint annotations to
    `output_dir/annotations.json`; returns the annotation file's path.

    Image i depends only on (seed, i), so datasets of different sizes with one seed share their first images.
    `image_format` "png" keeps marker colours exact; "jpg" (default) is ~10x smaller. Extra keyword arguments go
    to `render_scene` (person heights, truncation and occluder probabilities).
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}.")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}.")
    layout = get_layout(layout)
    body_point_names(layout)  # fail early on non-human layouts
    output_dir = Path(output_dir)
    image_dir = output_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([int(seed), i])
        image, people = render_scene(rng, layout, image_size, max_people, **scene_kwargs)
        file_name = f"{i:06d}.{image_format}"
        if image_format == "jpg":
            image.save(image_dir / file_name, quality=92)
        else:
            image.save(image_dir / file_name, compress_level=1)
        images.append({"id": i + 1, "file_name": file_name, "width": image.width, "height": image.height})
        for person in people:
            x, y, w, h = (round(float(v), 2) for v in person["bbox"])
            keypoints = person["keypoints"]
            flat = [round(float(v), 2) if j % 3 != 2 else int(v) for j, v in enumerate(keypoints.reshape(-1))]
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [x, y, w, h],
                "area": round(person["area"], 2),
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                "keypoints": flat,
                "num_keypoints": int(np.count_nonzero(keypoints[:, 2] > 0)),
                "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"vitpose_hf synthetic poses, layout {layout.name}, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [coco_category(layout)],
    }
    path = output_dir / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic COCO-format keypoint dataset.")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--num-images", type=int, help="images to write (required without --video)")
    parser.add_argument("--layout", default="coco", help="a human keypoint layout: coco, mpii, aic, crowdpose, ...")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--image-size", nargs=2, type=int, default=(256, 256), metavar=("W", "H"))
    parser.add_argument("--max-people", default=3, type=int)
    parser.add_argument("--image-format", default="jpg", choices=("jpg", "png"))
    parser.add_argument("--video", action="store_true",
                        help="write a video with known tracks instead (see vitpose_hf.data.synthetic_video)")
    parser.add_argument("--num-frames", default=60, type=int, help="with --video: frames of the video")
    args = parser.parse_args(argv)
    if args.video:
        from .synthetic_video import main as video_main

        video_main(argv)
        return
    if args.num_images is None:
        parser.error("--num-images is required (or --video)")
    start = time.perf_counter()
    path = generate_synthetic_dataset(
        args.output_dir, args.num_images, args.layout, args.seed, tuple(args.image_size), args.max_people,
        args.image_format,
    )
    seconds = time.perf_counter() - start
    print(f"Wrote {args.num_images} images and {path} in {seconds:.1f}s ({args.num_images / max(seconds, 1e-9):.0f} images/s).")


if __name__ == "__main__":
    main()
