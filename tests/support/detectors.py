"""A tiny object detector whose detections are set by hand, for tests of the detector path."""

from __future__ import annotations

import torch
from transformers import YolosConfig, YolosForObjectDetection, pipeline
from transformers.models.yolos import YolosImageProcessorPil


def tiny_detector(finds_people: bool, box=(0.5, 0.5, 0.4, 0.8), labels=("person", "car")):
    """A random tiny YOLOS whose heads are set so that every detection token says `box` (cx, cy, w, h relative)
    and, when `finds_people`, "person" with certainty (else "no object"); as an object-detection pipeline."""
    config = YolosConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=[64, 64],
        patch_size=16, num_detection_tokens=2, id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = YolosForObjectDetection(config).eval()
    with torch.no_grad():
        classes = model.class_labels_classifier.layers[-1]
        classes.weight.zero_()
        classes.bias.zero_()
        classes.bias[0 if finds_people else -1] = 12.0
        boxes = model.bbox_predictor.layers[-1]
        boxes.weight.zero_()
        boxes.bias.copy_(torch.logit(torch.tensor(box)))
    processor = YolosImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    return pipeline("object-detection", model=model, image_processor=processor, device="cpu")


def save_tiny_rt_detr(folder) -> None:
    """A random RT-DETR (the default detector's architecture, a few hundred kB) with "person" among its classes,
    saved with its image processor as on the Hub."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig
    from transformers.models.rt_detr import RTDetrImageProcessorPil

    labels = {0: "person", 1: "car"}
    backbone = RTDetrResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = RTDetrConfig(
        backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 16, 16], encoder_ffn_dim=32,
        encoder_attention_heads=2, encoder_layers=1, d_model=16, decoder_in_channels=[16, 16, 16],
        decoder_ffn_dim=32, decoder_attention_heads=2, decoder_layers=1, num_queries=5, num_denoising=0,
        id2label=labels, label2id={name: i for i, name in labels.items()},
    )
    torch.manual_seed(0)
    RTDetrForObjectDetection(config).eval().save_pretrained(folder)
    RTDetrImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
