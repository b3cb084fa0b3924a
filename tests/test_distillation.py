"""Distillation (paper section 3.4): output distillation, the two knowledge-token stages, teacher loading and
refusals. Training runs go through the real trainer on a few tiny synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import tiny_config_kwargs
from support.original import original_model, save_original, tiny

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.data import generate_synthetic_dataset
from vitpose_hf.keypoints import KeypointLayout, get_layout
from vitpose_hf.modeling_vitpose import VitPoseEstimatorOutput
from vitpose_hf.training import distillation
from vitpose_hf.training.config import ConfigError, load_training_config
from vitpose_hf.training.distillation import TOKEN_KEY, build_distiller
from vitpose_hf.training.supervised import train

IMAGE_SIZE = [64, 48]  # 16x12 heatmaps
STUDENT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
TEACHER = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=2)


def layout(name: str, base: str = "coco") -> dict:
    return {**get_layout(base).to_dict(), "name": name}


def model_config(size: dict, heads: list, **overrides) -> VitPoseConfig:
    kwargs = tiny_config_kwargs(**size, image_size=IMAGE_SIZE, keypoint_heads=heads)
    kwargs.update(overrides)
    return VitPoseConfig.from_variant("vitpose-small", **kwargs)


def make_teacher(folder: Path, heads: list | None = None, seed: int = 1, **overrides) -> VitPoseModel:
    """A random teacher with visible heatmaps and non-trivial BatchNorm statistics, saved to `folder`."""
    torch.manual_seed(seed)
    teacher = VitPoseModel(model_config(TEACHER, heads or [layout("synthetic")], **overrides))
    with torch.no_grad():
        for head in teacher.heads:
            head.final_layer.weight.mul_(300)
            for block in head.deconv_layers:
                block.batchnorm.running_mean.uniform_(-0.1, 0.1)
                block.batchnorm.running_var.uniform_(0.5, 1.5)
    teacher.save_pretrained(folder)
    return teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, 8, "coco", seed=0, image_size=(96, 96), max_people=2)
    return root


def recipe(tmp_path: Path, data: Path, size: dict, distill: dict, **overrides) -> dict:
    config = {
        "output_dir": str(tmp_path / "run"), "seed": 0, "per_device_batch_size": 4, "max_steps": 2, "num_epochs": None,
        "num_workers": 0, "logging_steps": 1, "checkpointing_steps": None,
        "model": {"variant": "vitpose-small", "config_overrides": tiny_config_kwargs(**size, image_size=IMAGE_SIZE)},
        "datasets": [{"name": "synthetic", "layout": "coco", "annotation_file": str(data / "annotations.json"),
                      "image_root": str(data / "images")}],
        "optimization": {"learning_rate": 1e-2, "warmup_steps": 0, "lr_decay_milestones": [100],
                         "lr_decay_unit": "steps", "layer_decay_rate": 1.0},
        "distillation": distill,
    }
    config.update(overrides)
    return config


def run(config: dict, monkeypatch) -> distillation.Distiller:
    """Train through the real loop; returns the distiller the trainer built."""
    built = []

    def capture(section):
        distiller = build_distiller(section)
        built.append(distiller)
        return distiller

    monkeypatch.setattr(distillation, "build_distiller", capture)
    train(load_training_config(overrides=config))
    return built[0]


def logged(output_dir: str) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]


# Output distillation through the trainer ------------------------------------------------------------------------
def test_output_distillation_step_leaves_the_teacher_unchanged(tmp_path, data, monkeypatch):
    make_teacher(tmp_path / "teacher")
    saved = VitPoseModel.from_pretrained(tmp_path / "teacher").state_dict()
    config = recipe(tmp_path, data, STUDENT, {"teacher": str(tmp_path / "teacher"), "output_weight": 2.0})
    distiller = run(config, monkeypatch)

    teacher = distiller.teacher
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    after = teacher.state_dict()
    assert after.keys() == saved.keys()
    for key, value in saved.items():  # weights and BatchNorm statistics
        assert torch.equal(after[key], value), key
    rows = logged(config["output_dir"])
    assert [row["step"] for row in rows] == [1, 2]
    assert all(row["loss_distill"] > 0 and row["loss_gt"] > 0 for row in rows)
    assert all(row["loss"] == pytest.approx(row["loss_gt"] + row["loss_distill"]) for row in rows)
    student = VitPoseModel.from_pretrained(Path(config["output_dir"]) / "final")
    assert student.config.hidden_size == 32 and student.config.num_knowledge_tokens == 0


# Knowledge-token stage (a) through the trainer ------------------------------------------------------------------
def test_token_stage_trains_only_the_token_of_the_frozen_teacher(tmp_path, data, monkeypatch):
    make_teacher(tmp_path / "teacher")
    saved = VitPoseModel.from_pretrained(tmp_path / "teacher").state_dict()
    config = recipe(tmp_path, data, TEACHER, {"stage": "token", "teacher": str(tmp_path / "teacher")})
    config["model"]["config_overrides"]["drop_path_rate"] = 0.3  # stage token turns it off: the teacher is frozen
    initial = {}
    original_prepare = distillation.Distiller.prepare

    def prepare(self, model, device):
        original_prepare(self, model, device)
        initial["token"] = model.vit.embeddings.knowledge_tokens.detach().clone()
        initial["trainable"] = [n for n, p in model.named_parameters() if p.requires_grad]

    monkeypatch.setattr(distillation.Distiller, "prepare", prepare)
    run(config, monkeypatch)

    assert initial["trainable"] == [TOKEN_KEY]
    final = VitPoseModel.from_pretrained(Path(config["output_dir"]) / "final")
    assert final.config.num_knowledge_tokens == 1 and final.config.drop_path_rate == 0.0
    state = final.state_dict()
    assert set(state) == set(saved) | {TOKEN_KEY}
    for key, value in saved.items():  # weights and BatchNorm statistics of the teacher
        assert torch.equal(state[key], value), key
    assert state[TOKEN_KEY].shape == (1, 1, 48)
    assert not torch.equal(state[TOKEN_KEY], initial["token"])
    rows = logged(config["output_dir"])
    assert all(set(row) >= {"loss_gt"} and "loss_distill" not in row for row in rows)


# Knowledge-token stage (b) ----------------------------------------------------------------------------------------
def crossed(token: np.ndarray, width: int) -> np.ndarray:
    """The documented width crossing: truncate or zero-pad, then rescale to the token's RMS."""
    out = token[..., :width] if token.shape[-1] >= width else np.pad(token, [(0, 0)] * (token.ndim - 1) + [(0, width - token.shape[-1])])
    rms = lambda t: np.sqrt((t ** 2).mean(-1, keepdims=True))  # noqa: E731
    return out * rms(token) / rms(out)


@pytest.mark.parametrize("student_width", [32, 64, 48])
def test_token_round_trips_and_changes_the_student(tmp_path, student_width):
    torch.manual_seed(3)
    source = VitPoseModel(model_config(TEACHER, [layout("synthetic")], num_knowledge_tokens=1))
    with torch.no_grad():
        source.vit.embeddings.knowledge_tokens.normal_(0.0, 1.0)
    source.save_pretrained(tmp_path / "stage_a")
    token = source.vit.embeddings.knowledge_tokens.detach().clone()

    distiller = build_distiller({"stage": "student", "token_from": str(tmp_path / "stage_a")})
    config = model_config(dict(hidden_size=student_width, num_hidden_layers=2, num_attention_heads=2),
                          [layout("synthetic")])
    distiller.configure(config)
    assert config.num_knowledge_tokens == 1
    assert config.knowledge_token_dim == (None if student_width == 48 else 48)
    student = VitPoseModel(config).eval()
    distiller.prepare(student, "cpu")
    assert torch.equal(student.vit.embeddings.knowledge_tokens, token)
    assert not student.vit.embeddings.knowledge_tokens.requires_grad
    assert distiller.loss_terms({}, None) == {}  # token only (eq. 6, L_td): the GT loss alone

    # The token the student sees: appended after the 4x3 patch tokens, crossed to its width.
    pixels = torch.randn(2, 3, *IMAGE_SIZE)
    with torch.no_grad():
        output = student(pixels, output_hidden_states=True)
    embedded = output.hidden_states[0]
    assert embedded.shape == (2, 12 + 1, student_width)
    expected = crossed(token.numpy().astype(np.float64), student_width)[0, 0]
    np.testing.assert_allclose(embedded[0, -1].numpy(), expected, rtol=1e-5, atol=1e-6)

    # Without the token the same weights give other heatmaps.
    bare_config = VitPoseConfig.from_dict({**config.to_dict(), "num_knowledge_tokens": 0, "knowledge_token_dim": None})
    bare = VitPoseModel(bare_config).eval()
    missing, unexpected = bare.load_state_dict(student.state_dict(), strict=False)
    assert not missing and unexpected == [TOKEN_KEY]
    with torch.no_grad():
        change = (bare(pixels).heatmaps - output.heatmaps).abs().max()
    assert change > 1e-3 * output.heatmaps.abs().max()  # far above float noise (~1e-7 relative)

    # save_pretrained / from_pretrained keep the token and the outputs.
    student.save_pretrained(tmp_path / "student")
    loaded = VitPoseModel.from_pretrained(tmp_path / "student").eval()
    assert torch.equal(loaded.vit.embeddings.knowledge_tokens, token)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).heatmaps, output.heatmaps)


def test_student_stage_with_token_and_output_distillation_through_the_trainer(tmp_path, data, monkeypatch):
    make_teacher(tmp_path / "teacher")
    torch.manual_seed(4)
    with_token = VitPoseModel(model_config(TEACHER, [layout("synthetic")], num_knowledge_tokens=1))
    with torch.no_grad():
        with_token.vit.embeddings.knowledge_tokens.normal_()
    with_token.save_pretrained(tmp_path / "stage_a")
    config = recipe(tmp_path, data, STUDENT, {"stage": "student", "token_from": str(tmp_path / "stage_a"),
                                              "teacher": str(tmp_path / "teacher")})
    run(config, monkeypatch)
    rows = logged(config["output_dir"])
    assert all(row["loss_distill"] > 0 for row in rows)
    final = VitPoseModel.from_pretrained(Path(config["output_dir"]) / "final")
    assert final.config.knowledge_token_dim == 48
    assert torch.equal(final.vit.embeddings.knowledge_tokens, with_token.vit.embeddings.knowledge_tokens)


# The equations on a hand-made example -------------------------------------------------------------------------------
HEAD_A = KeypointLayout(name="a", keypoints=("p", "q", "r")).to_dict()
HEAD_B = KeypointLayout(name="b", keypoints=("p", "q")).to_dict()


def constant_teacher(folder: Path) -> None:
    """A teacher whose heatmaps are its heads' biases: head b -> [0.5, -0.5], head a -> [0.1, 0.2, 0.3].
    Its heads are in the other order than the student's, so heads must be matched by name."""
    teacher = VitPoseModel(model_config(TEACHER, [HEAD_B, HEAD_A]))
    with torch.no_grad():
        for head, bias in zip(teacher.heads, ([0.5, -0.5], [0.1, 0.2, 0.3])):
            head.final_layer.weight.zero_()
            head.final_layer.bias.copy_(torch.tensor(bias))
    teacher.save_pretrained(folder)


@pytest.mark.parametrize("teacher_dtype", ["float32", "bfloat16"])
def test_loss_terms_are_the_equations_on_a_hand_made_example(tmp_path, teacher_dtype):
    constant_teacher(tmp_path / "teacher")
    distiller = build_distiller({"teacher": str(tmp_path / "teacher"), "output_weight": 2.0,
                                 "teacher_dtype": teacher_dtype})
    config = model_config(STUDENT, [HEAD_A, HEAD_B])
    distiller.configure(config)
    student = VitPoseModel(config)
    distiller.prepare(student, "cpu")
    assert all(p.dtype == getattr(torch, teacher_dtype) for p in distiller.teacher.parameters())

    # Sample 0 is from dataset a (3 keypoints), sample 1 from dataset b (2 keypoints; channel 2 is padding).
    # Every heatmap is constant over its 16x12 pixels, so a pixel mean is the value itself.
    def maps(values):
        return torch.tensor(values, dtype=torch.float32)[:, :, None, None].expand(2, 3, 16, 12).clone()

    student_maps = maps([[0.3, 0.0, 0.5], [0.1, 0.2, 0.0]])  # K_s
    labels = maps([[0.0, 1.0, 0.5], [0.1, 0.0, 0.0]])  # K_gt
    target_weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    batch = {"pixel_values": torch.randn(2, 3, *IMAGE_SIZE), "labels": labels, "target_weight": target_weight,
             "dataset_index": torch.tensor([0, 1])}
    outputs = VitPoseEstimatorOutput(heatmaps=student_maps)

    teacher_maps = distiller.teacher_heatmaps(batch["pixel_values"], batch["dataset_index"])  # K_t
    np.testing.assert_allclose(teacher_maps[:, :, 0, 0].float().numpy(), [[0.1, 0.2, 0.3], [0.5, -0.5, 0.0]],
                               atol=3e-3)

    # MSE = 0.5 * mean over samples of (sum over the sample's own joints of w^2 * (a - b)^2) / its keypoint count.
    # Eq. 4, weighted: sample 0: joints p, r (q has weight 0): (0.3-0.1)^2 + (0.5-0.3)^2 over 3 keypoints;
    # sample 1: (0.1-0.5)^2 + (0.2+0.5)^2 over 2 keypoints.
    distill = 2.0 * 0.5 * ((0.2**2 + 0.2**2) / 3 + (0.4**2 + 0.7**2) / 2) / 2
    # The GT term: sample 0: (0.3-0.0)^2 + (0.5-0.5)^2 over 3; sample 1: (0.1-0.1)^2 + (0.2-0.0)^2 over 2.
    ground_truth = 0.5 * ((0.3**2 + 0.0) / 3 + (0.0 + 0.2**2) / 2) / 2

    terms = distiller.loss_terms(batch, outputs)
    assert set(terms) == {"loss_distill"}
    tolerance = 1e-6 if teacher_dtype == "float32" else 5e-3
    assert float(terms["loss_distill"]) == pytest.approx(distill, rel=tolerance)
    loss_gt = student.compute_loss(student_maps, labels, target_weight, batch["dataset_index"])  # what forward returns
    assert float(loss_gt) == pytest.approx(ground_truth, rel=1e-6)
    # Eq. 6 (L_tod) with weight 1: MSE(S, K_t) + MSE(S, K_gt).
    distiller.settings.output_weight = 1.0
    total = float(loss_gt + distiller.loss_terms(batch, outputs)["loss_distill"])
    assert total == pytest.approx(distill / 2 + ground_truth, rel=tolerance)


# Other teacher formats --------------------------------------------------------------------------------------------
def test_original_pth_and_transformers_builtin_teachers(tmp_path):
    from transformers import VitPoseBackboneConfig, VitPoseForPoseEstimation
    from transformers import VitPoseConfig as BuiltinConfig

    original = original_model("vitpose-base")
    path = save_original(tmp_path / "vitpose-b.pth", original.state_dict())
    student_config = model_config(STUDENT, ["coco"])
    distiller = build_distiller({"teacher": str(path), "teacher_variant": "vitpose-base",
                                 "teacher_config_overrides": tiny("vitpose-base")})
    distiller.configure(student_config)
    distiller.prepare(VitPoseModel(student_config), "cpu")
    pixels = torch.randn(3, 3, *IMAGE_SIZE)
    with torch.no_grad():
        expected = original(pixels, 0, 0)
    got = distiller.teacher_heatmaps(pixels, torch.zeros(3, dtype=torch.long))
    assert (got - expected).abs().max() <= 1e-5

    backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=IMAGE_SIZE, out_indices=[2], mlp_ratio=4)
    names = dict(enumerate(get_layout("coco").keypoints))  # as in the released checkpoints
    builtin = VitPoseForPoseEstimation(BuiltinConfig(backbone_config=backbone, num_labels=17, id2label=names)).eval()
    builtin.save_pretrained(tmp_path / "builtin")
    distiller = build_distiller({"teacher": str(tmp_path / "builtin")})
    distiller.configure(student_config)
    distiller.prepare(VitPoseModel(student_config), "cpu")
    with torch.no_grad():
        expected = builtin(pixels).heatmaps
    got = distiller.teacher_heatmaps(pixels, torch.zeros(3, dtype=torch.long))
    assert got.shape == expected.shape == (3, 17, 16, 12)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


# Refusals ------------------------------------------------------------------------------------------------------------
def test_bad_teachers_are_refused_before_training_starts(tmp_path, data, monkeypatch):
    make_teacher(tmp_path / "two_heads", heads=[layout("coco"), layout("other")])
    config = recipe(tmp_path, data, STUDENT, {"teacher": str(tmp_path / "two_heads")})
    with pytest.raises(ConfigError, match=r"no head for dataset 'synthetic'.*teacher_heads\.synthetic"):
        run(config, monkeypatch)
    assert not (Path(config["output_dir"]) / "train_log.jsonl").exists()

    make_teacher(tmp_path / "big", image_size=[128, 96])
    config["distillation"] = {"teacher": str(tmp_path / "big")}
    with pytest.raises(ConfigError, match=r"teacher's heatmaps are \(32, 24\).*student's are \(16, 12\)"):
        run(config, monkeypatch)
    assert not (Path(config["output_dir"]) / "train_log.jsonl").exists()

    # Re-targeted to the student's input size, the same teacher is accepted.
    distiller = build_distiller({"teacher": str(tmp_path / "big"), "teacher_config_overrides": {"image_size": IMAGE_SIZE}})
    student_config = model_config(STUDENT, [layout("synthetic")])
    distiller.configure(student_config)
    assert distiller.teacher.config.image_size == IMAGE_SIZE


def test_head_mapping_and_keypoint_checks():
    teacher_config = model_config(TEACHER, [layout("coco"), layout("mpii", "mpii")])
    student = model_config(STUDENT, [layout("people"), layout("mpii", "mpii")])
    assert distillation.teacher_head_indices(teacher_config, student, {"people": "coco"}) == [0, 1]
    assert distillation.teacher_head_indices(teacher_config, student, {"people": 0}) == [0, 1]
    with pytest.raises(ConfigError, match="no head for dataset 'people'"):
        distillation.teacher_head_indices(teacher_config, student)
    with pytest.raises(ConfigError, match=r"teacher_heads names dataset 'nobody'"):
        distillation.teacher_head_indices(teacher_config, student, {"nobody": "coco", "people": "coco"})
    with pytest.raises(ConfigError, match=r"Teacher head 'mpii' \(16 keypoints\).*dataset 'people' \(17 keypoints\)"):
        distillation.teacher_head_indices(teacher_config, student, {"people": "mpii"})
    crowd = model_config(STUDENT, [layout("aic", "crowdpose")])  # 14 keypoints each, in another order
    with pytest.raises(ConfigError, match=r"same order.*teacher_heads\.aic: aic"):
        distillation.teacher_head_indices(model_config(TEACHER, ["aic"]), crowd)
    assert distillation.teacher_head_indices(model_config(TEACHER, ["aic"]), crowd, {"aic": "aic"}) == [0]


@pytest.mark.parametrize("section, message", [
    ({"teacher": "t", "output_wieght": 1.0}, r"Unknown config key distillation\.output_wieght"),
    ({"stage": "tokens", "teacher": "t"}, r"distillation\.stage must be one of output, token, student"),
    ({"stage": "output"}, r"distillation\.teacher is required for stage 'output'"),
    ({"stage": "token", "teacher": "t", "output_weight": 1.0}, r"GT loss only \(eq\. 5\)"),
    ({"teacher": "t", "output_weight": 0}, r"output_weight is 0: stage 'output' would distil nothing"),
    ({"teacher": "t", "token_from": "x"}, r"token_from needs stage 'student'"),
    ({"stage": "student"}, r"distillation\.token_from is required"),
    ({"stage": "student", "token_from": "x", "output_weight": 1.0}, r"output_weight needs distillation\.teacher"),
    ({"teacher": "t", "teacher_dtype": "bf16"}, r"teacher_dtype must be one of float32, bfloat16, float16"),
    ({"teacher": "t", "teacher_config_overrides": {"hidden_size": 8}},
     r"teacher_config_overrides\.hidden_size: a saved teacher keeps its architecture"),
])
def test_bad_sections_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        build_distiller(section)


def test_bad_teacher_and_token_sources_name_the_file(tmp_path):
    config = model_config(STUDENT, [layout("synthetic")])
    with pytest.raises(ConfigError, match=r"distillation\.teacher .*missing.* could not be loaded"):
        build_distiller({"teacher": str(tmp_path / "missing")}).configure(config)
    with pytest.raises(ConfigError, match=r"original checkpoint: give distillation\.teacher_variant"):
        build_distiller({"teacher": str(tmp_path / "t.pth")}).configure(config)
    path = save_original(tmp_path / "coco.pth", original_model("vitpose-base").state_dict())
    mpii = model_config(STUDENT, ["mpii"])
    with pytest.raises(ConfigError, match=r"distillation\.teacher .*coco\.pth' has no trained head for datasets \['mpii'\]"):
        build_distiller({"teacher": str(path), "teacher_variant": "vitpose-base",
                         "teacher_config_overrides": tiny("vitpose-base")}).configure(mpii)
    make_teacher(tmp_path / "plain")
    with pytest.raises(ConfigError, match=r"token_from .*plain has no knowledge token"):
        build_distiller({"stage": "student", "token_from": str(tmp_path / "plain")}).configure(config)
    with pytest.raises(ConfigError, match=r"token_from does not exist"):
        build_distiller({"stage": "student", "token_from": str(tmp_path / "nowhere")}).configure(config)
    with pytest.raises(ConfigError, match=r"model section must describe the teacher.*hidden_size: teacher 48 != model 32"):
        build_distiller({"stage": "token", "teacher": str(tmp_path / "plain")}).configure(config)
