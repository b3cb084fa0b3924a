"""VitPoseConfig and VitPoseModel: the paper's defaults, heads and experts, loss, and clear errors."""

import pytest
import torch
import torch.nn.functional as F
from support.models import randomize, tamper_weights, tiny_config_kwargs

from vitpose_hf import VARIANTS, VitPoseBackbone, VitPoseConfig, VitPoseModel
from vitpose_hf.keypoints import get_layout


def test_default_config_is_the_papers_vitpose_base():
    config = VitPoseConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert config.decoder == "classic" and config.image_size == [256, 192]
    assert config.layer_norm_eps == 1e-6 and config.patch_size == 16 and config.patch_stride == 16
    assert config.token_grid() == (16, 12) and config.heatmap_size == (64, 48)
    coco = get_layout("coco")
    assert config.head_names == ["coco"]
    assert config.keypoint_heads[0]["keypoints"] == list(coco.keypoints)
    assert [tuple(p) for p in config.keypoint_heads[0]["flip_pairs"]] == list(coco.flip_pairs)
    assert len(config.keypoint_heads[0]["skeleton"]) == 19


@pytest.mark.parametrize(
    "name,hidden,depth,heads,decoder,experts,num_heads",
    [
        ("vitpose-small", 384, 12, 12, "classic", 1, 1),
        ("vitpose-base-simple", 768, 12, 12, "simple", 1, 1),
        ("vitpose-large", 1024, 24, 16, "classic", 1, 1),
        ("vitpose-huge-simple", 1280, 32, 16, "simple", 1, 1),
        ("vitpose-base-coco-aic-mpii", 768, 12, 12, "classic", 1, 3),
        ("vitpose-plus-small", 384, 12, 12, "classic", 6, 6),
        ("vitpose-plus-huge", 1280, 32, 16, "classic", 6, 6),
    ],
)
def test_variants(name, hidden, depth, heads, decoder, experts, num_heads):
    config = VitPoseConfig.from_variant(name)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (hidden, depth, heads)
    assert config.decoder == decoder and config.num_experts == experts and len(config.keypoint_heads) == num_heads
    if experts > 1:
        assert config.head_names == ["coco", "aic", "mpii", "ap10k", "apt36k", "wholebody"]
        assert config.part_features == {384: 96, 768: 192, 1024: 256, 1280: 320}[hidden]


def test_all_variants_listed():
    sizes = ["small", "base", "large", "huge"]
    expected = {f"vitpose-{s}" for s in sizes} | {f"vitpose-{s}-simple" for s in sizes}
    expected |= {f"vitpose-plus-{s}" for s in sizes} | {"vitpose-base-coco-aic-mpii"}
    assert set(VARIANTS) == expected


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(hidden_size=100), "divisible by num_attention_heads"),
        (dict(num_experts=2, part_features=768), "part_features"),
        (dict(decoder="fancy"), "decoder"),
        (dict(patch_stride=5), "patch_stride"),
        (dict(keypoint_heads=["coco", "coco"]), "unique"),
        (dict(keypoint_heads=["nonexistent_layout"]), "nonexistent_layout"),
        (dict(attention_type="sparse"), "attention_type"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises((ValueError, KeyError), match=message):
        VitPoseConfig(**kwargs)


def test_unknown_variant():
    with pytest.raises(ValueError, match="vitpose-tiny"):
        VitPoseConfig.from_variant("vitpose-tiny")


def test_config_round_trip(tmp_path):
    config = VitPoseConfig.from_variant("vitpose-base-coco-aic-mpii", **tiny_config_kwargs())
    config.save_pretrained(tmp_path)
    loaded = VitPoseConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize("decoder", ["classic", "simple"])
@pytest.mark.parametrize("stride", [16, 8])
def test_heatmaps_are_quarter_resolution(decoder, stride):
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder=decoder, patch_stride=stride))).eval()
    heatmaps = model(torch.randn(2, 3, 256, 192)).heatmaps
    assert heatmaps.shape == (2, 17, 64, 48)


def test_other_input_size_interpolates_position_embeddings():
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).eval()
    assert model(torch.randn(1, 3, 384, 288)).heatmaps.shape == (1, 17, 96, 72)


def independent_loss(heatmaps, labels, weight):
    """mmpose 0.x JointsMSELoss(use_target_weight=True), joint by joint as the original writes it."""
    batch, joints = heatmaps.shape[:2]
    pred = heatmaps.reshape(batch, joints, -1)
    gt = labels.reshape(batch, joints, -1)
    loss = 0.0
    for j in range(joints):
        w = weight[:, j : j + 1]
        loss = loss + 0.5 * F.mse_loss(pred[:, j] * w, gt[:, j] * w)
    return loss / joints


def test_loss_is_the_recipes_joints_mse():
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).eval()
    pixels = torch.randn(3, 3, 256, 192)
    labels = torch.rand(3, 17, 64, 48)
    weight = (torch.rand(3, 17) > 0.3).float()
    out = model(pixels, labels=labels, target_weight=weight)
    assert torch.allclose(out.loss, independent_loss(out.heatmaps, labels, weight), rtol=1e-5)


def test_mixed_batch_routes_heads_and_experts_per_sample():
    config = VitPoseConfig(**tiny_config_kwargs(num_experts=3, part_features=8, keypoint_heads=["coco", "aic", "mpii"]))
    model = randomize(VitPoseModel(config)).eval()
    pixels = torch.randn(4, 3, 256, 192)
    index = torch.tensor([2, 0, 1, 0])
    mixed = model(pixels, dataset_index=index).heatmaps
    assert mixed.shape == (4, 17, 64, 48)
    for row, dataset in enumerate(index.tolist()):
        alone = model(pixels[row : row + 1], dataset_index=dataset).heatmaps
        k = alone.shape[1]
        assert torch.allclose(mixed[row : row + 1, :k], alone, atol=1e-5)
        assert torch.all(mixed[row, k:] == 0)
    by_name = model(pixels[:1], dataset_index="mpii").heatmaps
    assert by_name.shape[1] == 16 and torch.allclose(by_name, mixed[:1, :16], atol=1e-5)


def test_each_expert_and_head_only_sees_its_own_samples():
    config = VitPoseConfig(**tiny_config_kwargs(num_experts=3, part_features=8, keypoint_heads=["coco", "aic", "mpii"]))
    model = VitPoseModel(config).eval()
    rows_seen = {}

    def record(name):
        def hook(module, args, output):
            rows_seen.setdefault(name, []).append(args[0].shape[0])
        return hook

    for e, expert in enumerate(model.vit.layers[0].mlp.experts):
        expert.register_forward_hook(record(f"expert{e}"))
    for h, head in enumerate(model.heads):
        head.register_forward_hook(record(f"head{h}"))
    model(torch.randn(5, 3, 256, 192), dataset_index=torch.tensor([0, 0, 2, 0, 2]))
    assert rows_seen == {"expert0": [3], "expert2": [2], "head0": [3], "head2": [2]}


def test_mixed_batch_loss_averages_each_sample_over_its_own_keypoints():
    config = VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"]))
    model = randomize(VitPoseModel(config)).eval()
    pixels = torch.randn(3, 3, 256, 192)
    index = torch.tensor([0, 1, 1])
    labels = torch.rand(3, 17, 64, 48)
    weight = torch.rand(3, 17)
    weight[1:, 16:] = 0
    out = model(pixels, dataset_index=index, labels=labels, target_weight=weight)
    per_sample = [
        independent_loss(out.heatmaps[b : b + 1, :k], labels[b : b + 1, :k], weight[b : b + 1, :k])
        for b, k in enumerate([17, 16, 16])
    ]
    assert torch.allclose(out.loss, torch.stack(per_sample).mean(), rtol=1e-5)


def test_sdpa_and_eager_agree():
    config = VitPoseConfig(**tiny_config_kwargs())
    model = randomize(VitPoseModel(config)).eval()
    pixels = torch.randn(2, 3, 256, 192)
    model.set_attn_implementation("sdpa")
    sdpa = model(pixels).heatmaps
    model.set_attn_implementation("eager")
    eager = model(pixels).heatmaps
    assert torch.allclose(sdpa, eager, atol=1e-4)


def test_hidden_states_and_attentions():
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).eval()
    out = model(torch.randn(1, 3, 256, 192), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (1, 192, 32)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 2, 192, 192)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1, 2, 192), atol=1e-5)


def test_drop_path_schedule_and_behaviour():
    config = VitPoseConfig(**tiny_config_kwargs(num_hidden_layers=4, drop_path_rate=0.3))
    model = VitPoseModel(config)
    assert [layer.drop_path.rate for layer in model.vit.layers] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    pixels = torch.randn(4, 3, 256, 192)
    model.eval()
    assert torch.equal(model(pixels).heatmaps, model(pixels).heatmaps)
    model.train()
    torch.manual_seed(1)
    first = model.vit(pixels, [(0, None)]).feature_maps
    torch.manual_seed(2)
    second = model.vit(pixels, [(0, None)]).feature_maps
    assert not torch.allclose(first, second)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = VitPoseConfig(**tiny_config_kwargs())
    model = randomize(VitPoseModel(config)).train()
    pixels = torch.randn(2, 3, 256, 192)
    labels = torch.rand(2, 17, 64, 48)

    def grads():
        model.zero_grad()
        model(pixels, labels=labels).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    torch.manual_seed(0)
    plain = grads()
    model.activation_checkpointing_enable()
    torch.manual_seed(0)
    checkpointed = grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))


def test_backbone_feature_maps_and_weight_sharing(tmp_path):
    config = VitPoseConfig(**tiny_config_kwargs(out_indices=[1, 2]))
    model = randomize(VitPoseModel(config)).eval()
    model.save_pretrained(tmp_path)
    backbone = VitPoseBackbone.from_pretrained(tmp_path).eval()
    pixels = torch.randn(1, 3, 256, 192)
    maps = backbone(pixels).feature_maps
    assert [m.shape for m in maps] == [(1, 32, 16, 12)] * 2
    assert torch.allclose(maps[-1], model.vit(pixels, [(0, None)]).feature_maps, atol=1e-6)
    assert backbone.channels == [32, 32]


# Bad input -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    return VitPoseModel(VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"]))).eval()


def test_wrong_channel_count(tiny_model):
    with pytest.raises(ValueError, match=r"pixel_values must be \(batch, 3"):
        tiny_model(torch.randn(1, 4, 256, 192))


def test_dataset_index_out_of_range(tiny_model):
    with pytest.raises(ValueError, match="dataset_index 5 is out of range"):
        tiny_model(torch.randn(2, 3, 256, 192), dataset_index=torch.tensor([0, 5]))


def test_unknown_dataset_name(tiny_model):
    with pytest.raises(ValueError, match="Unknown dataset 'crowdpose'"):
        tiny_model(torch.randn(1, 3, 256, 192), dataset_index="crowdpose")


def test_labels_of_wrong_shape(tiny_model):
    with pytest.raises(ValueError, match="labels must have the heatmaps' shape"):
        tiny_model(torch.randn(1, 3, 256, 192), labels=torch.rand(1, 17, 32, 24))


def test_checkpoint_that_does_not_fit_the_config(tmp_path):
    VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    with pytest.raises(Exception, match="size mismatch|mismatched|does not fit"):
        VitPoseModel.from_pretrained(tmp_path, hidden_size=64, num_attention_heads=2)
    with pytest.raises(ValueError, match="missing_keys.*vit.layers.2"):
        VitPoseModel.from_pretrained(tmp_path, num_hidden_layers=3)


# Labels and the new-keypoint-set idiom ------------------------------------------------------------------------------
def test_id2label_names_the_first_heads_keypoints_and_survives_save_and_load(tmp_path):
    config = VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["mpii", "coco"]))
    mpii = list(get_layout("mpii").keypoints)
    assert config.id2label == dict(enumerate(mpii))
    assert config.label2id == {name: index for index, name in enumerate(mpii)}
    VitPoseModel(config).save_pretrained(tmp_path)
    loaded = VitPoseConfig.from_pretrained(tmp_path)
    assert loaded.id2label == dict(enumerate(mpii)) and loaded.label2id["head_top"] == mpii.index("head_top")
    loaded.keypoint_heads = ["coco"]  # a later change of heads relabels
    assert loaded.id2label[0] == "nose" and len(loaded.id2label) == 17


def test_new_keypoint_set_reinitialises_only_the_head(tmp_path):
    source = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs())))
    source.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # without the opt-in: refused
        VitPoseModel.from_pretrained(tmp_path, keypoint_heads=["mpii"])
    model = VitPoseModel.from_pretrained(tmp_path, keypoint_heads=["mpii"], ignore_mismatched_sizes=True)
    assert model.config.head_names == ["mpii"] and model.config.id2label[9] == "head_top"
    assert model.heads[0].final_layer.weight.shape[0] == 16
    old, new = source.state_dict(), model.state_dict()
    for key, value in new.items():
        if not key.startswith("heads.0.final_layer."):
            assert torch.equal(value, old[key]), key  # backbone and deconvolutions come from the checkpoint
    assert float(new["heads.0.final_layer.weight"].std()) < 0.01  # the original head init (std 0.001), not random 0.2


def test_new_keypoint_set_still_refuses_any_other_missing_weight(tmp_path):
    VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    tamper_weights(tmp_path, drop=["vit.layers.1.mlp.fc1.bias"], extra=["vit.layers.1.stray"])
    with pytest.raises(ValueError, match=r"vit\.layers\.1\.mlp\.fc1\.bias") as error:
        VitPoseModel.from_pretrained(tmp_path, keypoint_heads=["mpii"], ignore_mismatched_sizes=True)
    assert "vit.layers.1.stray" in str(error.value) and "heads.0" not in str(error.value)
