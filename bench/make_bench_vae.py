#!/usr/bin/env python3
"""A random-weight SD-style VAE for `bench:train --configs dit-s2-256` (not a test fixture).

Writes <out>/vae_{encoder,decoder}/{model.onnx,config.json} in the Optimum diffusers layout, exported
exactly as scripts/fixtures/make_tiny_vae.py does: a real diffusers AutoencoderKL with SD's structure
(four down/up blocks: downsample factor 8, 4 latent channels, mid-block attention, scaling_factor
0.18215) but narrow widths (32, 64, 128, 128 instead of SD's 128, 256, 512, 512), so that encoding the
bench's images once on a shared CPU takes seconds. Training reads the latent cache, so the VAE's
width does not change the timed training step.

Run with a Python that has torch, diffusers, optimum-onnx and onnx (the fixtures venv):
  python bench/make_bench_vae.py /tmp/kiln-bench-sd-vae
"""
from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

import torch


def main(out: Path) -> None:
    # A torchvision built for another torch breaks transformers' image-processor import, which diffusers
    # pulls in; the VAE needs neither.
    import importlib.util
    find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "torchvision" else find_spec(name, *a)
    sys.modules["torchvision"] = None  # type: ignore[assignment]
    from diffusers import AutoencoderKL
    from optimum.exporters.onnx.convert import export_models
    from optimum.exporters.onnx.model_configs import VaeDecoderOnnxConfig, VaeEncoderOnnxConfig

    torch.manual_seed(1234)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 128, 128), layers_per_block=1, latent_channels=4, norm_num_groups=16,
        sample_size=256, scaling_factor=0.18215,
    ).eval()
    encoder = copy.deepcopy(vae)
    encoder.forward = lambda sample: {"latent_parameters": encoder.encode(x=sample)["latent_dist"].parameters}
    decoder = copy.deepcopy(vae)
    decoder.forward = lambda latent_sample: decoder.decode(z=latent_sample)
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        export_models(
            models_and_onnx_configs={
                "vae_encoder": (encoder, VaeEncoderOnnxConfig(vae.config, task="semantic-segmentation")),
                "vae_decoder": (decoder, VaeDecoderOnnxConfig(vae.config, task="semantic-segmentation")),
            },
            output_dir=Path(tmp),
            output_names=["vae_encoder/model.onnx", "vae_decoder/model.onnx"],
        )
        for part in ("vae_encoder", "vae_decoder"):
            (out / part).mkdir(parents=True)
            shutil.copy(Path(tmp) / part / "model.onnx", out / part / "model.onnx")
            vae.save_config(out / part)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
