"""Sharded training: FSDP through torch's `fully_shard` on the model's `_no_split_modules`, two CPU processes (gloo).

accelerate's FSDP plugin needs GPUs; this is the CPU check that the model shards along those layers and trains to
the same losses as one process. The accelerate config files under configs/accelerate/ are checked to load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support.models import randomize, tiny_config_kwargs

REPO = Path(__file__).resolve().parents[1]
STEPS = 3
BATCH = 4


def make_model():
    from vitpose_hf import VitPoseConfig, VitPoseModel

    torch.manual_seed(0)
    # The simple decoder: no BatchNorm, whose batch statistics would differ between half and whole batches.
    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48], decoder="simple"))
    return randomize(VitPoseModel(config), std=0.05)


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 64, 48, generator=generator), torch.rand(BATCH, 17, 16, 12, generator=generator)


def train(model: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor, mean_over_ranks: bool) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(STEPS):
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        value = loss.detach().clone()
        if mean_over_ranks:
            dist.all_reduce(value)
            value /= dist.get_world_size()
        losses.append(float(value))
    return losses


def fsdp_worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        model = make_model()
        wrapped = [m for m in model.modules() if type(m).__name__ in model._no_split_modules]
        for module in wrapped:
            fully_shard(module)
        fully_shard(model)
        pixels, labels = make_batch()
        rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
        losses = train(model, pixels[rows], labels[rows], mean_over_ranks=True)
        qkv = model.vit.layers[0].attention.qkv.weight  # a DTensor: this rank holds only its shard
        local_rows, full_rows = qkv.to_local().shape[0], qkv.shape[0]
        full_qkv = qkv.full_tensor()
        if rank == 0:
            torch.save({"losses": losses, "wrapped": len(wrapped), "local_rows": local_rows, "full_rows": full_rows,
                        "qkv": full_qkv}, out)
    finally:
        dist.destroy_process_group()


def test_fully_shard_on_no_split_modules_trains_like_one_process(tmp_path):
    mp.spawn(fsdp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "fsdp.pt")), nprocs=2, join=True)
    sharded = torch.load(tmp_path / "fsdp.pt")
    model = make_model()
    assert sharded["wrapped"] == 1 + model.config.num_hidden_layers  # the embeddings and every transformer layer
    assert sharded["local_rows"] * 2 == sharded["full_rows"]  # each of the 2 ranks holds half of the weight

    pixels, labels = make_batch()
    single = train(model, pixels, labels, mean_over_ranks=False)
    assert single[-1] < single[0] and sharded["losses"][-1] < sharded["losses"][0]
    assert sharded["losses"] == pytest.approx(single, rel=1e-4)
    assert torch.allclose(sharded["qkv"], model.vit.layers[0].attention.qkv.weight.detach(), atol=1e-5)


@pytest.mark.parametrize("name,kind", [("fsdp.yaml", "FSDP"), ("deepspeed_zero2.yaml", "DEEPSPEED"),
                                       ("deepspeed_zero3.yaml", "DEEPSPEED")])
def test_accelerate_configs_load_and_name_the_models_layers(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    from vitpose_hf import VitPoseModel

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / name))
    assert config.distributed_type.value == kind
    if kind == "FSDP":
        layers = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
        assert sorted(layers) == sorted(VitPoseModel._no_split_modules)
        assert config.fsdp_config["fsdp_version"] == 2
    else:
        assert config.deepspeed_config["zero_stage"] == int(name[-6])
