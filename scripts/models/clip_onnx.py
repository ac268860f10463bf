"""The one CLIP export Kiln uses (`kiln models import clip` and the tiny fixture script): Optimum's exporter
on CLIPTextModelWithProjection and CLIPVisionModelWithProjection, as transformers.js's conversion script
does, giving the split layout Kiln loads: onnx/text_model.onnx (input_ids -> text_embeds) and
onnx/vision_model.onnx (pixel_values -> image_embeds).

Runs in .venv-models (requirements-models.txt); import torchvision_shim before this module.
"""
from __future__ import annotations

from pathlib import Path


def export_clip_onnx(src: Path, onnx_dir: Path) -> None:
    """Export the CLIP checkpoint in `src` (config.json + weights) to `onnx_dir`/{text,vision}_model.onnx."""
    from optimum.exporters.onnx.convert import export_models
    from optimum.exporters.onnx.model_configs import CLIPTextOnnxConfig, ViTOnnxConfig
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    class TextWithProjection(CLIPTextOnnxConfig):
        @property
        def outputs(self):
            return {"text_embeds": {0: "batch_size"}}

    class VisionWithProjection(ViTOnnxConfig):
        @property
        def outputs(self):
            return {"image_embeds": {0: "batch_size"}}

    text = CLIPTextModelWithProjection.from_pretrained(src, local_files_only=True, attn_implementation="eager").eval()
    vision = CLIPVisionModelWithProjection.from_pretrained(src, local_files_only=True, attn_implementation="eager").eval()
    export_models(
        models_and_onnx_configs={
            "text_model": (text, TextWithProjection(text.config, task="feature-extraction")),
            "vision_model": (vision, VisionWithProjection(vision.config, task="feature-extraction")),
        },
        output_dir=onnx_dir,
    )
