"""Fine-tuning as a transformers user would: `transformers.Trainer` and PEFT LoRA on the package's data pipeline.

The README's "Fine-tuning with the Trainer" and "PEFT LoRA" sections show these exact settings.
"""

from __future__ import annotations

import math

import pytest
import torch
from support.models import tiny_config_kwargs
from transformers import Trainer, TrainingArguments

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.data import (
    TopDownAugmentation,
    collate_keypoints,
    generate_synthetic_dataset,
    load_keypoint_dataset,
)


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    annotations = generate_synthetic_dataset(root, num_images=3, seed=0, image_size=(96, 96), max_people=2)
    transform = TopDownAugmentation("coco", input_size=(48, 64), heatmap_size=(12, 16), seed=0)
    return load_keypoint_dataset(annotations, root / "images", transform=transform)


def tiny_model() -> VitPoseModel:
    return VitPoseModel(VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48])))


def trainer_arguments(tmp_path, **overrides) -> TrainingArguments:
    arguments = dict(
        output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=2, per_device_eval_batch_size=2,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        dataloader_num_workers=0, seed=0,
        remove_unused_columns=False,  # the samples are made on the fly from columns the model never sees
        label_names=["labels"],  # the loss comes from the model; eval keeps the heatmap targets as labels
    )
    arguments.update(overrides)
    return TrainingArguments(**arguments)


def reference_loss(model: torch.nn.Module, samples: list[dict]) -> float:
    """The recipe's JointsMSELoss written out: 0.5 * mean over joints and pixels of ((pred - gt) * w) ** 2."""
    with torch.no_grad():
        pixels = torch.stack([s["pixel_values"] for s in samples])
        heatmaps = model(pixel_values=pixels).heatmaps
    losses = []
    for heatmap, sample in zip(heatmaps, samples):
        weight = sample["target_weight"].reshape(-1, 1, 1)
        losses.append(0.5 * float((((heatmap - sample["labels"]) * weight) ** 2).mean()))
    return sum(losses) / len(losses)


def test_trainer_trains_with_the_package_collate_function(train_set, tmp_path):
    model = tiny_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = Trainer(model=model, args=trainer_arguments(tmp_path), train_dataset=train_set, eval_dataset=train_set,
                      data_collator=collate_keypoints)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    after = model.state_dict()
    assert not torch.equal(after["vit.layers.0.attention.qkv.weight"], before["vit.layers.0.attention.qkv.weight"])
    assert not torch.equal(after["heads.0.final_layer.weight"], before["heads.0.final_layer.weight"])

    # Evaluation (no augmentation drawn twice: the transform is seeded per sample) gives the model's own loss.
    model.eval()
    samples = [train_set[i] for i in range(len(train_set))]
    metrics = trainer.evaluate()
    batches = [samples[i:i + 2] for i in range(0, len(samples), 2)]
    expected = sum(reference_loss(model, batch) * len(batch) for batch in batches) / len(samples)
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-4)


def test_trainer_without_remove_unused_columns_false_loses_the_inputs(train_set, tmp_path):
    trainer = Trainer(model=tiny_model(), args=trainer_arguments(tmp_path, remove_unused_columns=True),
                      train_dataset=train_set, data_collator=collate_keypoints)
    with pytest.raises(KeyError, match="keypoints"):  # the raw columns the transform needs are dropped before it runs
        trainer.train()


def test_peft_lora_on_attention_with_the_heads_saved(train_set, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = tiny_model()
    initial = {key: value.clone() for key, value in base.state_dict().items()}
    frozen_before = base.vit.layers[0].mlp.fc1.weight.detach().clone()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj"], modules_to_save=["heads"])
    model = get_peft_model(base, lora)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert any("attention.qkv.lora_A" in name for name in trainable)
    assert any("attention.proj.lora_B" in name for name in trainable)
    assert any(name.startswith("base_model.model.heads.modules_to_save.") for name in trainable)
    assert not any("mlp" in name or "embeddings" in name for name in trainable)

    trainer = Trainer(model=model, args=trainer_arguments(tmp_path), train_dataset=train_set,
                      data_collator=collate_keypoints)
    trainer.train()
    assert torch.equal(base.vit.layers[0].mlp.fc1.weight, frozen_before)  # outside LoRA nothing moves

    model.eval()
    pixels = torch.stack([train_set[i]["pixel_values"] for i in range(2)])
    with torch.no_grad():
        expected = model(pixel_values=pixels).heatmaps
    model.save_pretrained(tmp_path / "adapter")
    fresh = tiny_model()
    fresh.load_state_dict(initial)  # the base weights the adapter was trained on
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(pixel_values=pixels).heatmaps, expected, atol=1e-6)
        merged = reloaded.merge_and_unload()
        assert type(merged) is VitPoseModel
        assert torch.allclose(merged(pixel_values=pixels).heatmaps, expected, atol=1e-5)

