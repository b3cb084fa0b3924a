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
    """One dataset's keypoint set. Flip pairs and skeleton edges are pairs of keypoint indices."""

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    oks_sigmas: tuple[float, ...] | None = None
    joint_weights: tuple[float, ...] | None = None
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
        for key in ("oks_sigmas", "joint_weights"):
            if out[key] is not None:
                out[key] = list(out[key])
        if not out["extra"]:
            out.pop("extra")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "KeypointLayout":
        known = {"name", "keypoints", "flip_pairs", "skeleton", "oks_sigmas", "joint_weights", "extra"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown keys in keypoint layout {data.get('name')!r}: {sorted(unknown)}")
        return cls(**data)


_BUILTIN = {
    'coco': dict(
        keypoints=['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'],
        flip_pairs=[(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
        skeleton=[(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)],
        oks_sigmas=[0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
        joint_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5],
    ),
    'mpii': dict(
        keypoints=['right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top', 'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow', 'left_wrist'],
        flip_pairs=[(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)],
        skeleton=[(0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11), (11, 10), (8, 13), (13, 14), (14, 15)],
        oks_sigmas=[0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179, 0.072, 0.062],
        joint_weights=[1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5],
    ),
    'aic': dict(
        keypoints=['right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'head_top', 'neck'],
        flip_pairs=[(0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)],
        skeleton=[(2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11), (12, 13), (0, 6), (3, 9)],
        oks_sigmas=[0.0139, 0.0152, 0.0106, 0.0142, 0.015, 0.014, 0.0391, 0.0369, 0.0198, 0.0384, 0.0341, 0.0242, 0.0129, 0.0124],
        joint_weights=[1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 1.0, 1.0],
    ),
    'crowdpose': dict(
        keypoints=['left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle', 'top_head', 'neck'],
        flip_pairs=[(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)],
        skeleton=[(10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (12, 13), (1, 13), (0, 13)],
        oks_sigmas=[0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079],
        joint_weights=[0.2, 0.2, 0.2, 1.3, 1.5, 0.2, 1.3, 1.5, 0.2, 0.2, 0.5, 0.2, 0.2, 0.5],
    ),
    'ap10k': dict(
        keypoints=['L_Eye', 'R_Eye', 'Nose', 'Neck', 'Root of tail', 'L_Shoulder', 'L_Elbow', 'L_F_Paw', 'R_Shoulder', 'R_Elbow', 'R_F_Paw', 'L_Hip', 'L_Knee', 'L_B_Paw', 'R_Hip', 'R_Knee', 'R_B_Paw'],
        flip_pairs=[(0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)],
        skeleton=[(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (6, 7), (3, 8), (8, 9), (9, 10), (4, 11), (11, 12), (12, 13), (4, 14), (14, 15), (15, 16)],
        oks_sigmas=[0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089],
        joint_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5],
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
    return KeypointLayout("wholebody", tuple(names), tuple(pairs), tuple(skeleton))


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
