"""Conversion of the original mmpose checkpoints (REFERENCE.md section 2) into our format.

The synthetic checkpoints are the state dicts of `OriginalTopDown` below, a module tree that mirrors the original
classes (`ViT` / `ViTMoE` backbone, `TopdownHeatmapSimpleHead`, `TopDownMoE.associate_keypoint_heads`), so their key
names and shapes are those of the released files. Its forward, written here from the original's maths (fused qkv,
position-embedding slot 0 added to every token, LayerNorm eps 1e-6, all experts on the whole batch then masked), is the
independent reference every converted model is compared with.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from support.original import (
    HEADS,
    IMAGE_SIZE,
    KEYPOINTS,
    PUBLISHED_AP,
    REPO,
    OriginalTopDown,
    folder_snapshot,
    max_diff,
    original_model,
    pixels,
    save_original,
    tiny,
)

from vitpose_hf import VARIANTS, VitPoseBackbone, VitPoseConfig, VitPoseModel
from vitpose_hf.convert import (
    OriginalCheckpointError,
    VerificationError,
    convert_original_checkpoint,
    convert_original_state_dict,
    infer_variant,
    load_original_checkpoint,
    load_original_weights,
    original_config,
    render_model_card,
    split_dataset_expert,
)


# Tests ---------------------------------------------------------------------------------------------------------------
def test_synthetic_checkpoints_have_the_original_names_and_shapes():
    sd = original_model("vitpose-plus-base").state_dict()
    assert sd["backbone.pos_embed"].shape == (1, 13, 32)
    assert sd["backbone.cls_token"].shape == (1, 1, 32)
    assert sd["backbone.blocks.1.attn.qkv.weight"].shape == (96, 32)
    assert sd["backbone.blocks.0.mlp.fc2.weight"].shape == (24, 128)  # C - part rows
    assert sd["backbone.blocks.0.mlp.experts.5.weight"].shape == (8, 128)
    assert sd["keypoint_head.deconv_layers.0.weight"].shape == (32, 16, 4, 4)
    assert sd["keypoint_head.deconv_layers.1.num_batches_tracked"].ndim == 0
    assert sd["keypoint_head.deconv_layers.3.weight"].shape == (16, 16, 4, 4)
    assert sd["associate_keypoint_heads.4.final_layer.weight"].shape == (133, 16, 1, 1)
    assert "backbone.last_norm.bias" in sd
    simple = original_model("vitpose-base-simple").state_dict()
    assert [k for k in simple if k.startswith("keypoint_head")] == ["keypoint_head.final_layer.weight",
                                                                   "keypoint_head.final_layer.bias"]
    assert simple["keypoint_head.final_layer.weight"].shape == (17, 32, 3, 3)


@pytest.mark.parametrize("variant", sorted(HEADS))
def test_converted_heatmaps_equal_the_original_forward(tmp_path, variant):
    original = original_model(variant)
    checkpoint = save_original(tmp_path / "original.pth", original.state_dict())
    out = tmp_path / "converted"
    result = convert_original_checkpoint(checkpoint, variant, out, config_overrides=tiny(variant))

    assert {"model.safetensors", "config.json", "README.md", "conversion_report.json"} <= {n for n, _ in result.files}
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModel"].endswith("VitPoseModel")
    model = VitPoseModel.from_pretrained(out).eval()
    assert model.config.head_names == HEADS[variant]
    x = pixels()
    with torch.no_grad():
        for head, name in enumerate(HEADS[variant]):
            expected = original(x, head, head)
            got = model(x, dataset_index=name).heatmaps
            assert got.shape == expected.shape == (3, KEYPOINTS[name], 16, 12)
            assert max_diff(got, expected) <= 1e-5, (variant, name)
        if len(HEADS[variant]) > 1:  # one batch mixing every dataset: per-sample experts and heads
            mixed = torch.arange(len(HEADS[variant]) * 2) % len(HEADS[variant])
            batch = pixels(len(mixed), seed=2)
            got = model(batch, dataset_index=mixed).heatmaps
            for head, name in enumerate(HEADS[variant]):
                rows = (mixed == head).nonzero().flatten()
                expected = original(batch[rows], mixed[rows], head)
                assert max_diff(got[rows, : KEYPOINTS[name]], expected) <= 1e-5, (variant, name)

    # Folds nothing silently: every original key is converted or skipped with a reason.
    report = json.loads((out / "conversion_report.json").read_text())["report"]
    keys = set(original.state_dict())
    assert set(report["converted"]) | set(report["skipped"]) == keys
    assert not (report["unexpected"] or report["missing"] or report["mismatched"])
    assert ("backbone.cls_token" in report["skipped"]) == (len(HEADS[variant]) > 1)
    assert "backbone.pos_embed" in report["transformed"]


def test_position_slot_zero_matters_in_these_checks():
    """Sensitivity of the 1e-5 comparison: dropping the folded slot 0 would be caught."""
    original = original_model("vitpose-base")
    config = VitPoseConfig.from_variant("vitpose-base", **tiny("vitpose-base"))
    converted, _ = convert_original_state_dict(original.state_dict(), config)
    converted["vit.embeddings.position_embeddings"] = original.state_dict()["backbone.pos_embed"][:, 1:]
    model = VitPoseModel(config).eval()
    model.load_state_dict(converted)
    with torch.no_grad():
        assert max_diff(model(pixels()).heatmaps, original(pixels(), 0, 0)) > 1e-3


@pytest.mark.parametrize("dataset", ["coco", "wholebody"])
def test_split_dataset_equals_the_moe_model_on_that_dataset(tmp_path, dataset):
    original = original_model("vitpose-plus-base")
    checkpoint = save_original(tmp_path / "plus.pth", original.state_dict())
    full = convert_original_checkpoint(checkpoint, "vitpose-plus-base", tmp_path / "full",
                                       config_overrides=tiny("vitpose-plus-base")).model
    convert_original_checkpoint(checkpoint, "vitpose-plus-base", tmp_path / "split", split_dataset=dataset,
                                config_overrides=tiny("vitpose-plus-base"), verify=True)
    split = VitPoseModel.from_pretrained(tmp_path / "split").eval()
    assert split.config.num_experts == 1 and split.config.head_names == [dataset]
    assert split.vit.layers[0].mlp.experts is None and split.vit.layers[0].mlp.fc2.out_features == 32
    index = HEADS["vitpose-plus-base"].index(dataset)
    x = pixels()
    with torch.no_grad():
        assert max_diff(split(x).heatmaps, full(x, dataset_index=dataset).heatmaps) <= 1e-5
        assert max_diff(split(x).heatmaps, original(x, index, index)) <= 1e-5
    card = ModelCard.load(tmp_path / "split" / "README.md")
    assert f", {dataset} only" in card.text  # the title names the dataset


def test_split_of_a_multi_head_model_without_experts_keeps_that_head():
    original = original_model("vitpose-base-coco-aic-mpii")
    config = VitPoseConfig.from_variant("vitpose-base-coco-aic-mpii", **tiny("vitpose-base-coco-aic-mpii"))
    converted, _ = convert_original_state_dict(original.state_dict(), config)
    split = split_dataset_expert(converted, config, "mpii")
    assert split.config.head_names == ["mpii"]
    with torch.no_grad():
        assert max_diff(split(pixels()).heatmaps, original(pixels(), 2, 2)) <= 1e-5


@pytest.mark.parametrize("layout", ["mmpose", "model", "bare", "module"])
def test_checkpoint_wrappers_and_module_prefix(tmp_path, layout):
    sd = original_model("vitpose-base").state_dict()
    loaded = load_original_checkpoint(save_original(tmp_path / "c.pth", sd, layout))
    assert set(loaded) == set(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_auto_infers_dimensions_and_needs_heads_for_unreleased_sizes(tmp_path):
    sd = original_model("vitpose-plus-base").state_dict()
    with pytest.raises(OriginalCheckpointError, match="num_attention_heads"):
        original_config(sd, "auto", image_size=list(IMAGE_SIZE))
    with pytest.raises(OriginalCheckpointError, match="image_size"):
        original_config(sd, "auto", num_attention_heads=2)
    config = original_config(sd, "auto", num_attention_heads=2, image_size=list(IMAGE_SIZE))
    assert (config.hidden_size, config.num_hidden_layers, config.num_experts, config.part_features) == (32, 2, 6, 8)
    assert (config.decoder, config.decoder_channels, config.head_names) == ("classic", 16, HEADS["vitpose-plus-base"])
    simple = original_config(original_model("vitpose-base-simple").state_dict(), "auto", num_attention_heads=2,
                             image_size=list(IMAGE_SIZE))
    assert simple.decoder == "simple" and simple.num_experts == 1 and simple.head_names == ["coco"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_infer_variant_from_released_shapes(variant):
    size = variant.split("-")[2] if variant.startswith("vitpose-plus") else variant.split("-")[1]
    dims = {"small": (384, 12, 12, 96), "base": (768, 12, 12, 192), "large": (1024, 24, 16, 256),
            "huge": (1280, 32, 16, 320)}[size]
    heads = HEADS.get(variant) or (HEADS["vitpose-plus-base"] if "plus" in variant else ["coco"])
    plus = "plus" in variant
    with torch.device("meta"):  # full-size shapes without the memory
        model = OriginalTopDown(heads, dim=dims[0], depth=dims[1], num_heads=dims[2], classic="simple" not in variant,
                                num_expert=6 if plus else 1, part_features=dims[3] if plus else 0, channels=256,
                                tokens=(16, 12))
    sd = model.state_dict()
    assert infer_variant(sd) == variant
    config = original_config(sd, "auto")
    assert config.num_attention_heads == dims[2] and config.image_size == [256, 192]


def test_missing_and_misshaped_keys_are_named():
    config = VitPoseConfig.from_variant("vitpose-base", **tiny("vitpose-base"))
    sd = original_model("vitpose-base").state_dict()
    del sd["backbone.blocks.1.attn.proj.bias"]
    sd["keypoint_head.final_layer.weight"] = sd["keypoint_head.final_layer.weight"][:16]
    sd["backbone.extra_token"] = torch.zeros(1)
    with pytest.raises(OriginalCheckpointError) as error:
        convert_original_state_dict(sd, config)
    message = str(error.value)
    assert "vit.layers.1.attention.proj.bias" in message
    assert "keypoint_head.final_layer.weight (16, 16, 1, 1) but expected (17, 16, 1, 1)" in message
    assert "backbone.extra_token" in message


def test_training_initialisation_strict_and_non_strict():
    original = original_model("vitpose-base")
    config = VitPoseConfig.from_variant("vitpose-base", keypoint_heads=["coco", "mpii"], **tiny("vitpose-base"))
    model = VitPoseModel(config).eval()
    with pytest.raises(OriginalCheckpointError, match=r"missing .*heads\.1\."):
        load_original_weights(model, original.state_dict())
    report = load_original_weights(model, original.state_dict(), strict=False)
    assert "heads.1.final_layer.weight" in report.missing and not report.unexpected
    with torch.no_grad():
        assert max_diff(model(pixels(), dataset_index="coco").heatmaps, original(pixels(), 0, 0)) <= 1e-5

    backbone = VitPoseBackbone(VitPoseConfig.from_variant("vitpose-base", **tiny("vitpose-base"))).eval()
    report = load_original_weights(backbone, original.state_dict())
    assert "keypoint_head.final_layer.weight" in report.skipped
    with torch.no_grad():
        expected = original.backbone(pixels(), torch.zeros(3, dtype=torch.long))
        assert max_diff(backbone(pixels()).feature_maps[-1], expected) <= 1e-5


def test_position_embeddings_resampled_for_another_input_size():
    original = original_model("vitpose-base")
    config = VitPoseConfig.from_variant("vitpose-base", **{**tiny("vitpose-base"), "image_size": [80, 64]})
    with pytest.raises(OriginalCheckpointError, match="backbone.pos_embed"):
        convert_original_state_dict(original.state_dict(), config)
    converted, report = convert_original_state_dict(original.state_dict(), config, source_image_size=IMAGE_SIZE)
    pos = original.state_dict()["backbone.pos_embed"]
    grid = (pos[:, 1:] + pos[:, :1]).reshape(1, 4, 3, 32).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(5, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 20, 32)
    assert max_diff(converted["vit.embeddings.position_embeddings"], expected) <= 1e-6
    assert "resampled" in report.transformed["backbone.pos_embed"]


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def resnet_like() -> dict:
    return {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64), "layer1.0.conv1.weight":
            torch.zeros(64, 64, 3, 3), "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}


def _bad_checkpoint(kind: str, folder: Path) -> tuple[Path, str, str]:
    """(file, variant, pattern the error must match)."""
    path = folder / f"{kind}.pth"
    good = original_model("vitpose-base").state_dict()
    if kind == "custom-class-pickle":
        torch.save({"state_dict": good, "hook": Evil()}, path)
        return path, "vitpose-base", "not a weights-only checkpoint"
    if kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"a": [1, 2, 3]}}, protocol=4))
        return path, "vitpose-base", "not a weights-only checkpoint"
    if kind == "truncated":
        save_original(path, good)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "vitpose-base", "truncated or corrupt"
    if kind == "other-architecture":
        torch.save({"state_dict": resnet_like()}, path)
        return path, "vitpose-base", "not an original ViTPose checkpoint.*backbone.pos_embed"
    if kind == "not-a-dict":
        torch.save([torch.zeros(3)], path)
        return path, "vitpose-base", "holds a list"
    if kind == "wrong-variant":  # a ViTPose+ checkpoint converted as the plain ViTPose-B
        save_original(path, original_model("vitpose-plus-base").state_dict())
        return path, "vitpose-base", r"mlp\.experts\.0\.weight.*6 experts"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["custom-class-pickle", "plain-pickle", "truncated", "other-architecture",
                                  "not-a-dict", "wrong-variant"])
def test_bad_inputs_give_clear_errors_and_leave_the_output_untouched(tmp_path, kind, capsys):
    path, variant, pattern = _bad_checkpoint(kind, tmp_path)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("previous conversion")
    before = folder_snapshot(existing)
    for output, overwrite in ((existing, True), (tmp_path / "fresh", False)):
        with pytest.raises(OriginalCheckpointError, match=pattern):
            convert_original_checkpoint(path, variant, output, overwrite=overwrite, config_overrides=tiny(variant))
    assert folder_snapshot(existing) == before
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folders left
    assert "this must never run" not in capsys.readouterr().out


def test_numpy_metadata_is_accepted(tmp_path):
    sd = original_model("vitpose-base").state_dict()
    torch.save({"state_dict": sd, "meta": {"best": np.float32(0.7), "hist": np.arange(4)}}, tmp_path / "c.pth")
    assert set(load_original_checkpoint(tmp_path / "c.pth")) == set(sd)


def test_existing_output_needs_overwrite(tmp_path):
    checkpoint = save_original(tmp_path / "c.pth", original_model("vitpose-base").state_dict())
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_original_checkpoint(checkpoint, "vitpose-base", out, config_overrides=tiny("vitpose-base"))
    assert (out / "old.txt").read_text() == "old"
    convert_original_checkpoint(checkpoint, "vitpose-base", out, overwrite=True, config_overrides=tiny("vitpose-base"))
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    convert_original_checkpoint(checkpoint, "vitpose-base", empty, config_overrides=tiny("vitpose-base"))
    assert (empty / "config.json").is_file()


class FakeHfApi:
    """Records what would be sent to the Hub."""

    calls: list = []

    def __init__(self, token=None, **kwargs):
        FakeHfApi.calls.append(("init", {"token": token}))

    def create_repo(self, **kwargs):
        FakeHfApi.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(("upload_folder", {**kwargs, "files": sorted(
            p.name for p in Path(kwargs["folder_path"]).iterdir())}))


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    return FakeHfApi.calls


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(tmp_path, fake_hub, capsys):
    checkpoint = save_original(tmp_path / "c.pth", original_model("vitpose-base-simple").state_dict())
    out = tmp_path / "vitpose-base-simple"
    result = convert_original_checkpoint(checkpoint, "vitpose-base-simple", out, push_to_hub="org/vitpose-base-simple",
                                         config_overrides=tiny("vitpose-base-simple"), log=print)
    names = [name for name, _ in fake_hub]
    assert names == ["init", "create_repo", "upload_folder"]
    assert fake_hub[0][1]["token"] is None  # HfApi reads HF_TOKEN / the login itself
    assert fake_hub[1][1] == dict(repo_id="org/vitpose-base-simple", repo_type="model", private=False, exist_ok=True)
    upload = fake_hub[2][1]
    assert upload["repo_id"] == "org/vitpose-base-simple" and Path(upload["folder_path"]) == out
    assert {"model.safetensors", "config.json", "README.md"} <= set(upload["files"])
    assert result.repo_url == "https://huggingface.co/org/vitpose-base-simple"
    assert 'AutoModel.from_pretrained("org/vitpose-base-simple")' in (out / "README.md").read_text()
    assert "hf_secret_token_value" not in capsys.readouterr().out


def test_dry_run_writes_and_uploads_nothing(tmp_path, fake_hub, capsys):
    checkpoint = save_original(tmp_path / "c.pth", original_model("vitpose-base").state_dict())
    script = load_script()
    out = tmp_path / "out"
    code = script.main(["--checkpoint", str(checkpoint), "--variant", "vitpose-base", "--output-dir", str(out),
                        "--push-to-hub", "org/vitpose-base", "--dry-run", "--config-override", "hidden_size=32",
                        "--config-override", "num_hidden_layers=2", "--config-override", "num_attention_heads=2",
                        "--config-override", "decoder_channels=16", "--config-override", "image_size=[64, 48]"])
    printed = capsys.readouterr().out
    assert code == 0
    assert not out.exists() and fake_hub == []
    assert "org/vitpose-base" in printed and "model.safetensors" in printed and "README.md" in printed
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def load_script():
    spec = importlib.util.spec_from_file_location("convert_original_checkpoint",
                                                  REPO / "scripts" / "convert_original_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_auto_variant_verify_and_split(tmp_path, capsys):
    original = original_model("vitpose-plus-base")
    checkpoint = save_original(tmp_path / "plus.pth", original.state_dict(), layout="module")
    out = tmp_path / "coco"
    script = load_script()
    code = script.main(["--checkpoint", str(checkpoint), "--variant", "auto", "--num-attention-heads", "2",
                        "--config-override", "image_size=[64,48]", "--output-dir", str(out), "--verify",
                        "--split-dataset", "coco"])
    assert code == 0, capsys.readouterr().err
    verification = json.loads((out / "conversion_report.json").read_text())["verification"]
    assert set(verification["original_reference"]) == set(HEADS["vitpose-plus-base"]) | {"mixed_batch"}
    assert verification["split"] <= 1e-5 and verification["published"].startswith("not checked")
    model = VitPoseModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert max_diff(model(pixels()).heatmaps, original(pixels(), 0, 0)) <= 1e-5
    # Bad input through the CLI: an error message and exit code 1, nothing written.
    code = script.main(["--checkpoint", str(tmp_path / "missing.pth"), "--output-dir", str(tmp_path / "x")])
    assert code == 1 and "missing.pth" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_verify_detects_a_wrong_conversion():
    from vitpose_hf.convert.reference import check_against_original

    original = original_model("vitpose-base-coco-aic-mpii")
    config = VitPoseConfig.from_variant("vitpose-base-coco-aic-mpii", **tiny("vitpose-base-coco-aic-mpii"))
    converted, _ = convert_original_state_dict(original.state_dict(), config)
    model = VitPoseModel(config).eval()
    model.load_state_dict(converted)
    assert max(check_against_original(model, original.state_dict(), atol=1e-5).values()) <= 1e-5
    with torch.no_grad():
        model.heads[2].final_layer.bias.add_(0.01)  # the mpii head only
    with pytest.raises(VerificationError, match="mpii"):
        check_against_original(model, original.state_dict(), atol=1e-5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_cards_render_and_validate(variant):
    config = VitPoseConfig.from_variant(variant)
    card = render_model_card(variant, config, repo_id=f"org/{variant}")
    parsed = ModelCard(str(card))  # parses the YAML header and the model-index
    data = parsed.data
    assert (data.license, data.pipeline_tag, data.library_name) == ("apache-2.0", "keypoint-detection", "transformers")
    assert data.datasets and data.datasets[0] == "coco" and len(data.datasets) == len(config.head_names)
    size = variant.split("-")[2] if "plus" in variant else variant.split("-")[1]
    assert data.base_model == (None if size == "small" else f"facebook/vit-mae-{size}")
    (result,) = data.eval_results
    assert (result.task_type, result.dataset_type, result.metric_type) == ("keypoint-detection", "coco", "ap")
    assert result.metric_value == PUBLISHED_AP[variant]
    body = parsed.text
    assert f'AutoModel.from_pretrained("org/{variant}")' in body
    assert 'pipeline("keypoint-detection"' in body and "labels=" in body and "@inproceedings{xu2022vitpose" in body
    assert ("ViTPose++" in body) == ("plus" in variant)
    assert (REPO / "model_cards" / f"{variant}.md").is_file()


def test_convert_all_script_covers_every_variant():
    text = (REPO / "scripts" / "convert_all.sh").read_text()
    for variant in VARIANTS:
        assert re.search(rf"--variant {re.escape(variant)}$", text, re.M), variant
    meta = {v: ModelCard.load(REPO / "model_cards" / f"{v}.md").data.to_dict() for v in VARIANTS}
    for variant, data in meta.items():
        assert data["original_checkpoint"] in text, variant


def test_published_values_check_runs_the_processor_and_flags_a_mismatch(tmp_path):
    """The online check (needs COCO 000000000139.jpg and the real weights) exercised on a synthetic image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    image = tmp_path / "people.png"
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(image)
    checkpoint = save_original(tmp_path / "c.pth", original_model("vitpose-base").state_dict())
    wrong = {"vitpose-base": dict(boxes=[[10.0, 12.0, 40.0, 80.0], [50.0, 20.0, 30.0, 60.0]], dataset="coco",
                                  keypoints=[(1, 0, 1000.0, 1000.0, 0.5)])}
    with pytest.raises(VerificationError, match="Person 1, keypoint 0"):
        convert_original_checkpoint(checkpoint, "vitpose-base", tmp_path / "out", verify=True, verify_image=image,
                                    published_keypoints=wrong, config_overrides=tiny("vitpose-base"))
    assert not (tmp_path / "out").exists()
    others = {"vitpose-plus-base": wrong["vitpose-base"]}
    result = convert_original_checkpoint(checkpoint, "vitpose-base", tmp_path / "out", verify=True, verify_image=image,
                                         published_keypoints=others, config_overrides=tiny("vitpose-base"))
    assert result.verification["published"].startswith("not checked: no published reference values for vitpose-base")


def test_output_folder_holds_the_processor_config_and_the_published_table_is_well_formed(tmp_path):
    checkpoint = save_original(tmp_path / "c.pth", original_model("vitpose-base").state_dict())
    convert_original_checkpoint(checkpoint, "vitpose-base", tmp_path / "out", config_overrides=tiny("vitpose-base"))
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": IMAGE_SIZE[0], "width": IMAGE_SIZE[1]}
    table = load_script().published_expectations()
    assert set(table) <= set(VARIANTS) and {"vitpose-base", "vitpose-plus-base"} <= set(table)
    for spec in table.values():
        assert len(spec["boxes"]) == 2 and spec["dataset"] == "coco"
        assert all(len(entry) == 5 and 0 < entry[4] < 1 for entry in spec["keypoints"])


def test_multi_task_heads_at_an_unreleased_size_are_not_called_the_base_release():
    with torch.device("meta"):
        model = OriginalTopDown(["coco", "aic", "mpii"], dim=1024, depth=24, num_heads=16, channels=256, tokens=(16, 12))
    with pytest.raises(OriginalCheckpointError, match="vitpose-large-coco-aic-mpii"):
        infer_variant(model.state_dict())
    config = original_config(model.state_dict(), "auto")
    assert (config.hidden_size, config.num_attention_heads, config.head_names) == (1024, 16, ["coco", "aic", "mpii"])
