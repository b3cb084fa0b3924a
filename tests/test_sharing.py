"""Every folder the project writes loads where vitpose_hf is not installed, and loads without prompting where it is.

The folders: plain `model.save_pretrained` + `processor.save_pretrained`, the pipeline's `save_pretrained`, the
conversion of an original checkpoint, a training run's `final/`, an MAE encoder and the embedded model. The remote
checks run in one subprocess whose import system refuses `vitpose_hf`, so only the copied code can serve them.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.models import randomize, tiny_config_kwargs
from support.original import original_model, save_original, tiny
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForKeypointDetection,
    AutoModelForPoseEstimation,
    pipeline,
)

from vitpose_hf import (
    VitPoseBackbone,
    VitPoseConfig,
    VitPoseImageProcessor,
    VitPoseModel,
)

REPO = Path(__file__).resolve().parents[1]
ESTIMATOR_AUTO_CLASSES = ("AutoModel", "AutoModelForKeypointDetection", "AutoModelForPoseEstimation")
BOXES = [[20.0, 10.0, 60.0, 100.0], [70.0, 30.0, 40.0, 80.0]]


def _image(path: Path) -> str:
    pixels = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def _plain(folder: Path) -> None:
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs())))
    model.save_pretrained(folder)
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)


def _pipeline(folder: Path) -> None:
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"]))))
    pose = pipeline("keypoint-detection", model=model, image_processor=VitPoseImageProcessor(), device="cpu")
    pose.save_pretrained(folder)


def _conversion(folder: Path) -> None:
    from vitpose_hf.convert.release import convert_original_checkpoint

    checkpoint = save_original(folder.parent / "original.pth", original_model("vitpose-base").state_dict())
    convert_original_checkpoint(checkpoint, "vitpose-base", folder, config_overrides=tiny("vitpose-base"))


def _training_final(folder: Path) -> None:
    from vitpose_hf.training.config import load_training_config
    from vitpose_hf.training.supervised import SupervisedTask

    recipe = load_training_config(None, {"datasets": [{"name": "x", "annotation_file": "a.json", "image_root": "i"}]})
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple"))))
    folder.mkdir(parents=True, exist_ok=True)
    SupervisedTask(recipe).save_final(model, folder, {}, "train")


def _embedded(folder: Path) -> None:
    spec = importlib.util.spec_from_file_location("embed_model", REPO / "scripts" / "embed_model.py")
    embed_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embed_model)
    source = folder.parent / "final_to_embed"
    _training_final(source)
    embed_model.embed(source, target=folder)


def _mae_encoder(folder: Path) -> None:
    from vitpose_hf.training.mae import (
        MAESection,
        MAETask,
        VitPoseMaskedAutoencoder,
        load_mae_config,
    )

    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48]))
    decoder = {"decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
               "decoder_intermediate_size": 64}
    mae = VitPoseMaskedAutoencoder(randomize(VitPoseBackbone(config)), MAESection(**decoder)).eval()
    recipe = load_mae_config(None, {"datasets": [{"name": "x", "annotation_file": "a.json", "image_root": "i"}]})
    folder.mkdir(parents=True, exist_ok=True)
    MAETask(recipe).save_final(mae, folder, {"eval_loss": 0.5}, "pretrain")


ESTIMATOR_WRITERS = {"plain": _plain, "pipeline": _pipeline, "conversion": _conversion,
                     "training_final": _training_final, "embedded": _embedded}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shared")
    written = {}
    for kind, writer in {**ESTIMATOR_WRITERS, "mae_encoder": _mae_encoder}.items():
        (root / kind).mkdir()
        writer(root / kind / "folder")
        written[kind] = root / kind / "folder"
    return written


# Where the package is not installed -------------------------------------------------------------------------------
REMOTE_SCRIPT = r'''
import importlib.abc, json, sys


class RefuseVitposeHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "vitpose_hf" or name.startswith("vitpose_hf."):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)")
        return None


sys.meta_path.insert(0, RefuseVitposeHf())
try:
    import vitpose_hf  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("vitpose_hf is importable: the check would prove nothing")

import torch
import transformers
from transformers import pipeline

spec = json.loads(sys.argv[1])
pixels = torch.load(spec["pixels"])
results = {}
for kind, entry in spec["folders"].items():
    folder, got = entry["folder"], {}
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = transformers.AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    got["classes"] = {"AutoConfig": type(config).__module__, "AutoImageProcessor": type(processor).__module__}
    inputs = pixels[:, :, : config.image_size[0], : config.image_size[1]]
    for auto_name in entry["auto_classes"]:
        auto = getattr(transformers, auto_name)
        if auto_name == "AutoBackbone":
            # transformers' AutoBackbone.from_pretrained asks the Hub about every path, local folders included (and
            # fails offline), so resolve the class through auto_map with from_config and load the folder with it.
            model = type(auto.from_config(config, trust_remote_code=True)).from_pretrained(folder).eval()
        else:
            model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        got["classes"][auto_name] = f"{type(model).__module__}.{type(model).__name__}"
        with torch.no_grad():
            output = model(inputs)
        tensor = output.heatmaps if hasattr(output, "heatmaps") else output.feature_maps[-1]
        torch.save(tensor, f"{spec['out']}/{kind}-{auto_name}.pt")
    if entry["pipeline"]:
        pose = pipeline("keypoint-detection", model=folder, trust_remote_code=True, device="cpu")
        got["classes"]["pipeline"] = type(pose).__module__
        got["people"] = pose(spec["image"], boxes=spec["boxes"])
    results[kind] = got
assert not any(name.startswith("vitpose_hf") for name in sys.modules), "vitpose_hf was imported"
print(json.dumps(results))
'''


def _expected_auto_map(kind: str) -> dict[str, str]:
    if kind == "mae_encoder":
        models = {"AutoBackbone": "VitPoseBackbone"}
    else:
        models = {**dict.fromkeys(ESTIMATOR_AUTO_CLASSES, "VitPoseModel"), "AutoBackbone": "VitPoseBackbone"}
    return {
        "AutoConfig": "configuration_vitpose.VitPoseConfig",
        "AutoImageProcessor": "image_processing_vitpose.VitPoseImageProcessor",
        **{auto: f"modeling_vitpose.{name}" for auto, name in models.items()},
    }


def test_every_folder_declares_every_auto_class_and_the_pipeline(folders):
    for kind, folder in folders.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == _expected_auto_map(kind), kind
        code = {path.name for path in folder.glob("*.py")}
        assert {"configuration_vitpose.py", "modeling_vitpose.py", "image_processing_vitpose.py"} <= code, kind
        if kind == "mae_encoder":
            assert "custom_pipelines" not in config and "pipeline.py" not in code  # no heads, no pose pipeline
        else:
            assert config["custom_pipelines"]["keypoint-detection"]["impl"] == "pipeline.KeypointDetectionPipeline"
            assert "pipeline.py" in code, kind
        for path in folder.glob("*.py"):  # nothing beyond torch, transformers, numpy, pillow and the copies
            for line in path.read_text().splitlines():
                if line.startswith(("import ", "from ")) and not line.startswith(("from .", "from __future__")):
                    top = line.split()[1].split(".")[0]
                    # huggingface_hub comes with transformers (it is one of its own requirements).
                    allowed = {"torch", "transformers", "huggingface_hub", "numpy", "PIL"}
                    assert top in allowed or top in sys.stdlib_module_names, (
                        f"{kind}/{path.name}: {line}"
                    )


def test_every_folder_loads_without_the_package(folders, tmp_path):
    pixels = torch.randn(2, 3, 256, 192)
    torch.save(pixels, tmp_path / "pixels.pt")
    image = _image(tmp_path / "person.png")
    spec = {"pixels": str(tmp_path / "pixels.pt"), "image": image, "boxes": BOXES, "out": str(tmp_path), "folders": {}}
    for kind, folder in folders.items():
        backbone = kind == "mae_encoder"
        autos = ("AutoBackbone",) if backbone else (*ESTIMATOR_AUTO_CLASSES, "AutoBackbone")
        spec["folders"][kind] = {"folder": str(folder), "auto_classes": autos, "pipeline": not backbone}
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-I", "-c", REMOTE_SCRIPT, json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])

    for kind, folder in folders.items():
        got, entry = results[kind], spec["folders"][kind]
        for name, module in got["classes"].items():
            assert module.startswith("transformers_modules."), f"{kind} {name}: {module}"
        for auto_name in entry["auto_classes"]:
            expected_class = "VitPoseBackbone" if auto_name == "AutoBackbone" else "VitPoseModel"
            assert got["classes"][auto_name].endswith(f".{expected_class}"), (kind, auto_name, got["classes"][auto_name])
            # The installed classes on the same folder are the reference.
            installed = (VitPoseBackbone if expected_class == "VitPoseBackbone" else VitPoseModel).from_pretrained(folder)
            size = installed.config.image_size
            with torch.no_grad():
                output = installed.eval()(pixels[:, :, : size[0], : size[1]])
            reference = output.heatmaps if expected_class == "VitPoseModel" else output.feature_maps[-1]
            remote = torch.load(tmp_path / f"{kind}-{auto_name}.pt")
            assert remote.shape == reference.shape and torch.allclose(remote, reference, atol=1e-6), (kind, auto_name)
        if entry["pipeline"]:
            installed_pose = pipeline("keypoint-detection", model=str(folder), device="cpu")
            reference_people = installed_pose(image, boxes=BOXES)
            assert len(got["people"]) == len(BOXES)
            for person, reference in zip(got["people"], reference_people):
                assert person["labels"] == reference["labels"]
                np.testing.assert_allclose(person["keypoints"], reference["keypoints"], atol=1e-4)
                np.testing.assert_allclose(person["scores"], reference["scores"], atol=1e-5)


# Where the package is installed ---------------------------------------------------------------------------------
@pytest.fixture
def no_prompt(monkeypatch):
    """Any "Do you wish to run the custom code?" prompt fails the test instead of waiting on stdin."""

    def refuse(prompt: str = "") -> str:
        raise AssertionError(f"prompted: {prompt[-200:]}")

    monkeypatch.setattr(builtins, "input", refuse)


def test_installed_package_loads_local_folders_with_its_classes_and_never_prompts(folders, no_prompt):
    import vitpose_hf.pipeline

    for kind in ESTIMATOR_WRITERS:
        folder = str(folders[kind])
        assert type(AutoConfig.from_pretrained(folder)) is VitPoseConfig
        for auto in (AutoModel, AutoModelForKeypointDetection, AutoModelForPoseEstimation):
            assert type(auto.from_pretrained(folder)) is VitPoseModel, (kind, auto.__name__)
        assert type(AutoImageProcessor.from_pretrained(folder)) is VitPoseImageProcessor
        pose = pipeline("keypoint-detection", model=folder, device="cpu")
        assert type(pose) is vitpose_hf.pipeline.KeypointDetectionPipeline, kind
        assert type(pose.model) is VitPoseModel
    encoder = str(folders["mae_encoder"])
    assert type(AutoBackbone.from_config(AutoConfig.from_pretrained(encoder))) is VitPoseBackbone
    assert type(VitPoseBackbone.from_pretrained(encoder)) is VitPoseBackbone
    with pytest.raises(ValueError, match="missing_keys.*heads.0.final_layer"):  # an encoder is no pose estimator
        AutoModel.from_pretrained(encoder)


def test_predict_command_on_a_shared_folder_never_prompts(folders, tmp_path):
    image = _image(tmp_path / "person.png")
    command = [sys.executable, "-c", "import sys; from vitpose_hf.cli import main; sys.exit(main())", "predict", image,
               "--model", str(folders["pipeline"]), "--output-dir", str(tmp_path / "out"), "--no-flip"]
    # stdin closed: a prompt would fail at once (EOF) rather than stall for transformers' 15 s timeout.
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=REPO)
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "person.json").read_text())["people"]


def test_saving_leaves_the_in_memory_config_free_of_custom_pipelines(tmp_path, no_prompt):
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))
    model.save_pretrained(tmp_path)
    assert "custom_pipelines" in json.loads((tmp_path / "config.json").read_text())
    assert not getattr(model.config, "custom_pipelines", None)
    pose = pipeline("keypoint-detection", model=model, image_processor=VitPoseImageProcessor(), device="cpu")
    assert type(pose).__name__ == "KeypointDetectionPipeline"
