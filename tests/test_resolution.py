"""Input resolutions (paper Table 3) and 1/8 features (Table 4): presets, and checkpoints re-targeted on load."""

import pytest
import torch
import torch.nn.functional as F
from support.models import randomize, tiny_config_kwargs
from transformers import AutoModel

from vitpose_hf import (
    VitPoseBackbone,
    VitPoseConfig,
    VitPoseModel,
    export_to_transformers,
)
from vitpose_hf.configuration_vitpose import INPUT_RESOLUTIONS

POS_KEY = "vit.embeddings.position_embeddings"




def bicubic_grid(position_embeddings: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """The usual resampling (timm, DeiT): the (rows, cols) grid as an image, bicubic, no corner alignment."""
    channels = position_embeddings.shape[-1]
    image = position_embeddings.reshape(1, *old, channels).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=new, mode="bicubic", align_corners=False)
    return image.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], channels)


@pytest.fixture
def checkpoint_256x192(tmp_path):
    """A model trained at 256x192 (16x12 tokens), saved with save_pretrained."""
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))).eval()
    model.save_pretrained(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


@pytest.mark.parametrize("name", ["256x192", "256x256", "384x288", "384x384", "576x432"])
@pytest.mark.parametrize("stride", [16, 8])
def test_presets_give_quarter_resolution_heatmaps(name, stride):
    height, width = INPUT_RESOLUTIONS[name]
    assert f"{height}x{width}" == name
    config = VitPoseConfig(**tiny_config_kwargs(image_size=name, patch_stride=stride))
    assert config.image_size == [height, width]
    # The original's padding (2 at stride 16, 4 at stride 8) makes the grid ceil(side / stride): 576x432 -> 36x27.
    assert config.token_grid() == (-(-height // stride), -(-width // stride))
    assert config.heatmap_size == (height // 4, width // 4)


def test_bad_image_size_names_the_presets():
    with pytest.raises(ValueError, match="384x288"):
        VitPoseConfig(image_size="384 by 288")


@pytest.mark.parametrize("image_size", [(384, 288), "384x288"])
def test_256x192_checkpoint_loads_at_384x288_and_runs(checkpoint_256x192, image_size):
    original, path = checkpoint_256x192
    model = VitPoseModel.from_pretrained(path, image_size=image_size).eval()
    assert model.config.image_size == [384, 288] and model.config.token_grid() == (24, 18)
    expected = bicubic_grid(original.state_dict()[POS_KEY], (16, 12), (24, 18))
    torch.testing.assert_close(model.state_dict()[POS_KEY], expected)
    for key, value in original.state_dict().items():  # everything else carries over untouched
        if key != POS_KEY:
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    pixels = torch.randn(2, 3, 384, 288)
    with torch.no_grad():
        heatmaps = model(pixels).heatmaps
        # The 256x192 model resamples the same way at run time when fed a 384x288 crop.
        torch.testing.assert_close(heatmaps, original(pixels).heatmaps, rtol=1e-4, atol=1e-5)
    assert heatmaps.shape == (2, 17, 96, 72)


def test_automodel_override_and_round_trip(checkpoint_256x192, tmp_path):
    original, path = checkpoint_256x192
    model = AutoModel.from_pretrained(path, image_size="384x288")
    assert isinstance(model, VitPoseModel) and model.config.image_size == [384, 288]
    model.save_pretrained(tmp_path / "at384")
    reloaded = VitPoseModel.from_pretrained(tmp_path / "at384")
    assert reloaded.config.image_size == [384, 288]
    torch.testing.assert_close(reloaded.state_dict()[POS_KEY], bicubic_grid(original.state_dict()[POS_KEY], (16, 12), (24, 18)))


def test_transformers_builtin_checkpoint_loads_at_another_size(tmp_path):
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple")))).eval()
    export_to_transformers(model, tmp_path / "builtin")
    loaded = VitPoseModel.from_pretrained(tmp_path / "builtin", image_size="256x256")
    assert loaded.config.token_grid() == (16, 16)
    torch.testing.assert_close(loaded.state_dict()[POS_KEY], bicubic_grid(model.state_dict()[POS_KEY], (16, 12), (16, 16)))


def test_stride16_checkpoint_loads_into_stride8_backbone(checkpoint_256x192):
    original, path = checkpoint_256x192
    backbone = VitPoseBackbone.from_pretrained(path, patch_stride=8).eval()
    projection = backbone.vit.embeddings.projection
    assert projection.stride == (8, 8) and projection.padding == (4, 4)  # REFERENCE: ratio 2 -> stride 8, padding 4
    torch.testing.assert_close(backbone.state_dict()[POS_KEY], bicubic_grid(original.state_dict()[POS_KEY], (16, 12), (32, 24)))
    torch.testing.assert_close(projection.weight, original.vit.embeddings.projection.weight)
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 256, 192)).feature_maps[-1].shape == (1, 32, 32, 24)


def test_stride16_to_stride8_classic_head_is_refused_unless_not_strict(checkpoint_256x192):
    original, path = checkpoint_256x192
    with pytest.raises(ValueError, match=r"patch_stride 16 -> 8.*deconv_layers\.1"):
        VitPoseModel.from_pretrained(path, patch_stride=8)
    model = VitPoseModel.from_pretrained(path, patch_stride=8, strict=False).eval()
    assert len(model.heads[0].deconv_layers) == 1  # 1/8 features need one doubling to reach 1/4
    torch.testing.assert_close(model.heads[0].final_layer.weight, original.heads[0].final_layer.weight)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 192)).heatmaps.shape == (1, 17, 64, 48)


def test_stride16_simple_decoder_loads_strictly_at_stride8(tmp_path):
    original = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple")))).eval()
    original.save_pretrained(tmp_path)
    model = VitPoseModel.from_pretrained(tmp_path, patch_stride=8, image_size="384x288").eval()
    assert model.config.token_grid() == (48, 36)
    torch.testing.assert_close(model.state_dict()[POS_KEY], bicubic_grid(original.state_dict()[POS_KEY], (16, 12), (48, 36)))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 288)).heatmaps.shape == (1, 17, 96, 72)


def test_load_state_dict_resamples_a_preset_grid():
    small = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs())))
    large = VitPoseModel(VitPoseConfig(**tiny_config_kwargs(image_size="576x432", patch_stride=8)))
    large.load_state_dict(small.state_dict(), strict=False)  # the classic heads differ in depth at stride 8
    assert large.config.token_grid() == (72, 54)
    torch.testing.assert_close(large.state_dict()[POS_KEY], bicubic_grid(small.state_dict()[POS_KEY], (16, 12), (72, 54)))


def test_load_state_dict_refuses_a_grid_it_cannot_tell():
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))
    state = model.state_dict()
    state[POS_KEY] = torch.zeros(1, 100, 32)  # 10x10? 20x5? not a preset and not 4:3
    with pytest.raises(ValueError, match="Cannot tell the token grid.*100 positions"):
        model.load_state_dict(state)


def test_with_resolution(checkpoint_256x192):
    original, _ = checkpoint_256x192
    assert original.with_resolution("256x192") is original
    moved = original.with_resolution("576x432")
    assert moved is not original and moved.config.heatmap_size == (144, 108)
    assert original.config.image_size == [256, 192]  # the source model is left as it was
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        original.with_resolution("big")
