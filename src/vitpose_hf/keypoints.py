"""Keypoint layouts: names, left/right flip pairs, skeleton and OKS sigmas per dataset.

A layout is everything about a keypoint set that is not learned: the heads, the flip test, the
augmentation, the evaluation and the drawing all read it from here (or from the copy stored in a
model's config), so a custom keypoint set only has to be declared once with `register_layout`.
This module is pure Python on purpose: it travels with the model code for `trust_remote_code`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class KeypointLayout:
    """One dataset's keypoint set. Flip pairs and skeleton edges are pairs of keypoint indices.

    `upper_body_ids` are the keypoints the half-body augmentation counts as upper body (the rest is lower body; None:
    no split, no half-body); `half_body` says whether the dataset's training pipeline has the half-body step at all.
    """

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    oks_sigmas: tuple[float, ...] | None = None
    joint_weights: tuple[float, ...] | None = None
    upper_body_ids: tuple[int, ...] | None = None
    half_body: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keypoints", tuple(self.keypoints))
        object.__setattr__(self, "flip_pairs", tuple(tuple(int(i) for i in p) for p in self.flip_pairs))
        object.__setattr__(self, "skeleton", tuple(tuple(int(i) for i in p) for p in self.skeleton))
        k = len(self.keypoints)
        if k == 0:
            raise ValueError(f"Keypoint layout {self.name!r} has no keypoints.")
        if len(set(self.keypoints)) != k:
            raise ValueError(f"Keypoint layout {self.name!r} has duplicate keypoint names.")
        for what, pairs in (("flip pair", self.flip_pairs), ("skeleton edge", self.skeleton)):
            for pair in pairs:
                if len(pair) != 2 or not all(0 <= i < k for i in pair) or pair[0] == pair[1]:
                    raise ValueError(f"Keypoint layout {self.name!r}: {what} {pair} is not two distinct indices in [0, {k}).")
        seen = [i for pair in self.flip_pairs for i in pair]
        if len(seen) != len(set(seen)):
            raise ValueError(f"Keypoint layout {self.name!r}: a keypoint appears in more than one flip pair.")
        if self.upper_body_ids is not None:
            ids = tuple(sorted(int(i) for i in self.upper_body_ids))
            if any(not 0 <= i < k for i in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"Keypoint layout {self.name!r}: upper_body_ids {list(ids)} must be distinct indices in [0, {k}).")
            object.__setattr__(self, "upper_body_ids", ids)
        object.__setattr__(self, "half_body", bool(self.half_body))
        for what, values in (("oks_sigmas", self.oks_sigmas), ("joint_weights", self.joint_weights)):
            if values is not None:
                object.__setattr__(self, what, tuple(float(v) for v in values))
                if len(values) != k:
                    raise ValueError(f"Keypoint layout {self.name!r}: {what} has {len(values)} values for {k} keypoints.")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_index(self) -> list[int]:
        """For each keypoint, the index of its mirror image (itself when it has none)."""
        index = list(range(self.num_keypoints))
        for left, right in self.flip_pairs:
            index[left], index[right] = right, left
        return index

    def to_dict(self) -> dict:
        """The JSON-friendly form stored in a model config."""
        out = asdict(self)
        out["flip_pairs"] = [list(p) for p in self.flip_pairs]
        out["skeleton"] = [list(p) for p in self.skeleton]
        out["keypoints"] = list(self.keypoints)
        for key in ("oks_sigmas", "joint_weights", "upper_body_ids"):
            if out[key] is not None:
                out[key] = list(out[key])
        if not out["extra"]:
            out.pop("extra")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "KeypointLayout":
        known = {"name", "keypoints", "flip_pairs", "skeleton", "oks_sigmas", "joint_weights", "upper_body_ids",
                 "half_body", "extra"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown keys in keypoint layout {data.get('name')!r}: {sorted(unknown)}")
        return cls(**data)


# Values from the original's dataset info files (keypoint `type` upper/lower gives `upper_body_ids`; AP-10K types
# R_F_Paw as lower body there).
_BUILTIN = {
    'coco': dict(
        keypoints=['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'],
        flip_pairs=[(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
        skeleton=[(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)],
        oks_sigmas=[0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
        joint_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5],
        upper_body_ids=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ),
    'mpii': dict(
        keypoints=['right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top', 'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow', 'left_wrist'],
        flip_pairs=[(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)],
        skeleton=[(0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11), (11, 10), (8, 13), (13, 14), (14, 15)],
        oks_sigmas=[0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179, 0.072, 0.062],
        joint_weights=[1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5],
        upper_body_ids=[7, 8, 9, 10, 11, 12, 13, 14, 15],
        half_body=False,  # the original's MPII pipelines (single-dataset and ViTPose+) have no half-body step
    ),
    'aic': dict(
        keypoints=['right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'head_top', 'neck'],
        flip_pairs=[(0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)],
        skeleton=[(2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11), (12, 13), (0, 6), (3, 9)],
        oks_sigmas=[0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642, 0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173],
        joint_weights=[1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.0],
        upper_body_ids=[0, 1, 2, 3, 4, 5, 12, 13],
    ),
    'crowdpose': dict(
        keypoints=['left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle', 'top_head', 'neck'],
        flip_pairs=[(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)],
        skeleton=[(10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (12, 13), (1, 13), (0, 13)],
        oks_sigmas=[0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079],
        joint_weights=[0.2, 0.2, 0.2, 1.3, 1.5, 0.2, 1.3, 1.5, 0.2, 0.2, 0.5, 0.2, 0.2, 0.5],
        upper_body_ids=[0, 1, 2, 3, 4, 5, 12, 13],
    ),
    'ap10k': dict(
        keypoints=['L_Eye', 'R_Eye', 'Nose', 'Neck', 'Root of tail', 'L_Shoulder', 'L_Elbow', 'L_F_Paw', 'R_Shoulder', 'R_Elbow', 'R_F_Paw', 'L_Hip', 'L_Knee', 'L_B_Paw', 'R_Hip', 'R_Knee', 'R_B_Paw'],
        flip_pairs=[(0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)],
        skeleton=[(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (6, 7), (3, 8), (8, 9), (9, 10), (4, 11), (11, 12), (12, 13), (4, 14), (14, 15), (15, 16)],
        oks_sigmas=[0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089],
        joint_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5],
        upper_body_ids=[0, 1, 2, 3, 5, 6, 7, 8, 9],
    ),}


def _wholebody() -> KeypointLayout:
    """COCO-WholeBody: 17 body, 6 feet, 68 face, 21 left-hand and 21 right-hand keypoints."""
    coco = _BUILTIN["coco"]
    feet = ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"]
    face = [f"face_{i}" for i in range(68)]
    hand = ["wrist"] + [f"{finger}_{j}" for finger in ("thumb", "index", "middle", "ring", "pinky") for j in (1, 2, 3, 4)]
    names = list(coco["keypoints"]) + feet + face + [f"left_hand_{n}" for n in hand] + [f"right_hand_{n}" for n in hand]
    pairs = list(coco["flip_pairs"]) + [(17, 20), (18, 21), (19, 22)]
    # Face (iBUG 68 order, offset 23): jaw line, brows, nose wings, eyes, mouth.
    face_pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    face_pairs += [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    face_pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
    pairs += [(23 + a, 23 + b) for a, b in face_pairs]
    pairs += [(91 + i, 112 + i) for i in range(21)]
    skeleton = list(coco["skeleton"]) + [(15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22)]
    for base in (91, 112):
        for finger in range(5):
            chain = [0] + [1 + 4 * finger + j for j in range(4)]
            skeleton += [(base + a, base + b) for a, b in zip(chain[:-1], chain[1:])]
    # The original's COCO-WholeBody info types only the 17 body points; its half-body step counts every untyped
    # point (feet, face, hands) as lower body.
    return KeypointLayout("wholebody", tuple(names), tuple(pairs), tuple(skeleton), oks_sigmas=_WHOLEBODY_SIGMAS,
                          upper_body_ids=tuple(range(11)))


# COCO-WholeBody OKS sigmas of the original's dataset info: body 17, feet 6, face 68, left hand 21, right hand 21.
_WHOLEBODY_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
    0.087, 0.089, 0.089, 0.068, 0.066, 0.066, 0.092, 0.094, 0.094, 0.042, 0.043, 0.044, 0.043, 0.04,
    0.035, 0.031, 0.025, 0.02, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045, 0.013, 0.012,
    0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009,
    0.008, 0.016, 0.01, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.01,
    0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.01, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007,
    0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025,
    0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017,
    0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
)


KEYPOINT_LAYOUTS: dict[str, KeypointLayout] = {name: KeypointLayout(name=name, **spec) for name, spec in _BUILTIN.items()}
# APT-36K annotates the AP-10K keypoint set; OCHuman annotates COCO's.
KEYPOINT_LAYOUTS["apt36k"] = KeypointLayout("apt36k", **{k: v for k, v in _BUILTIN["ap10k"].items()})
KEYPOINT_LAYOUTS["wholebody"] = _wholebody()
LAYOUT_ALIASES = {"ochuman": "coco", "coco_wholebody": "wholebody", "ai_challenger": "aic", "aichallenger": "aic"}


def register_layout(layout: KeypointLayout | dict, overwrite: bool = False) -> KeypointLayout:
    """Declare a custom keypoint set so configs, datasets and evaluation can refer to it by name."""
    if isinstance(layout, dict):
        layout = KeypointLayout.from_dict(layout)
    if layout.name in KEYPOINT_LAYOUTS and not overwrite and KEYPOINT_LAYOUTS[layout.name] != layout:
        raise ValueError(f"A different keypoint layout named {layout.name!r} exists; pass overwrite=True to replace it.")
    KEYPOINT_LAYOUTS[layout.name] = layout
    return layout


def get_layout(name_or_layout: str | dict | KeypointLayout) -> KeypointLayout:
    """Resolve a layout given by name (case-insensitive, with aliases), dict or instance."""
    if isinstance(name_or_layout, KeypointLayout):
        return name_or_layout
    if isinstance(name_or_layout, dict):
        return KeypointLayout.from_dict(name_or_layout)
    key = str(name_or_layout).lower().replace("-", "_")
    key = LAYOUT_ALIASES.get(key, key)
    if key not in KEYPOINT_LAYOUTS:
        raise KeyError(f"Unknown keypoint layout {name_or_layout!r}; known: {sorted(KEYPOINT_LAYOUTS)} (declare others with register_layout).")
    return KEYPOINT_LAYOUTS[key]
