#!/usr/bin/env python3
"""`kiln models import`: turn a local checkpoint into the model directory Kiln loads, and check it.

  python scripts/models/import_model.py <kind> <source> --out <dir>

kinds (source = a local directory; nothing is downloaded):
  clip           CLIPModel (transformers)         -> onnx/text_model.onnx + onnx/vision_model.onnx (Optimum
                                                     configs, *_embeds outputs) + tokenizer.json etc.
  captioner      VisionEncoderDecoder (ViT-GPT2)  -> Optimum image-to-text-with-past export + the
                                                     cross-attention split (split_cross_attention.py)
                 BlipForConditionalGeneration     -> export_blip.py's graphs (decoder split built in)
  vae            diffusers AutoencoderKL (a VAE   -> vae_encoder/ + vae_decoder/ (model.onnx, config.json),
                 dir, or a pipeline with vae/)       as `optimum-cli export onnx` writes a pipeline's VAE
  fid-inception  pytorch-fid's FID Inception      -> model.onnx + extractor.json (eval/architecture.md)
                 weights (pt_inception-*.pth, or
                 a dir holding one)

Each export is run against the PyTorch model on generated inputs; the largest difference must be within
the kind's tolerance (TOLERANCES, relative to max(1, |reference|) except fid-inception's absolute 1e-4),
else the import fails and <out> is not marked imported. Then <out>/kiln-model.json is written: kind,
type, source and output files with sha256, the check, tool versions. `kiln models import` records it in
lineage.

Runs in the models venv (`.venv-models`, requirements-models.txt, installed by scripts/setup.sh).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MANIFEST = "kiln-model.json"
TOLERANCES = {"clip": 1e-4, "captioner": 1e-4, "vae": 1e-3, "fid-inception": 1e-4}
TOOLS = ["torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "diffusers", "pytorch-fid", "numpy"]
HF_TEXT_FILES = ["config.json", "generation_config.json", "preprocessor_config.json"]


class ImportError_(SystemExit):
    """A failed import: the message names the problem and the fix (exit code 2)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"kiln models import: {message}\nFix: {fix}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path, skip: tuple[str, ...] = ()) -> list[dict]:
    if root.is_file():
        return [{"path": root.name, "sha256": sha256(root), "bytes": root.stat().st_size}]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip and not rel.startswith("."):
            out.append({"path": rel, "sha256": sha256(p), "bytes": p.stat().st_size})
    return out


def rel_diff(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ImportError_(f"the export's output shape {got.shape} differs from PyTorch's {want.shape}", "report this checkpoint; the exporter does not handle it.")
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def read_config(src: Path) -> dict:
    p = src / "config.json"
    if not p.is_file():
        raise ImportError_(f"{p} is missing", "pass the directory of a Hugging Face checkpoint (config.json + weights), "
                           "e.g. from `huggingface-cli download <repo> --local-dir DIR`.")
    return json.loads(p.read_text())


def copy_processor_files(src: Path, out: Path) -> None:
    """config/generation/preprocessor JSON as they are; tokenizer re-saved by the fast tokenizer (tokenizer.json)."""
    from transformers import AutoTokenizer

    for name in HF_TEXT_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    AutoTokenizer.from_pretrained(src, local_files_only=True, use_fast=True).save_pretrained(out)
    if not (out / "preprocessor_config.json").is_file():
        from transformers import AutoImageProcessor

        AutoImageProcessor.from_pretrained(src, local_files_only=True).save_pretrained(out)


# --------------------------------------------------------------------------- clip
def import_clip(src: Path, out: Path) -> dict:
    from clip_onnx import export_clip_onnx
    from transformers import AutoTokenizer, CLIPModel

    export_clip_onnx(src, out / "onnx")
    copy_processor_files(src, out)
    # Check: generated images and captions through PyTorch's CLIPModel and the two graphs.
    model = CLIPModel.from_pretrained(src, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    size = model.config.vision_config.image_size
    pixels = torch.from_numpy(np.random.default_rng(0).uniform(-2, 2, (2, 3, size, size)).astype(np.float32))
    ids = tok(["a photo of a cat on a red chair", "two circles"], padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        img, txt = model.get_image_features(pixel_values=pixels).numpy(), model.get_text_features(input_ids=ids).numpy()
    o_img = session(out / "onnx" / "vision_model.onnx").run(None, {"pixel_values": pixels.numpy()})[0]
    o_txt = session(out / "onnx" / "text_model.onnx").run(None, {"input_ids": ids.numpy()})[0]
    return {"type": "clip", "what": "image_embeds and text_embeds of 2 generated images / 2 captions",
            "max_rel_diff": max(rel_diff(o_img, img), rel_diff(o_txt, txt))}


# --------------------------------------------------------------------------- captioners
def import_vit_gpt2(src: Path, out: Path) -> dict:
    from optimum.exporters.onnx import main_export
    from transformers import VisionEncoderDecoderModel

    with tempfile.TemporaryDirectory() as tmp:
        main_export(str(src), tmp, task="image-to-text-with-past", local_files_only=True, do_validation=False)
        (out / "onnx").mkdir(parents=True, exist_ok=True)
        for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
            shutil.copy(Path(tmp) / name, out / "onnx" / name)
    copy_processor_files(src, out)
    model = VisionEncoderDecoderModel.from_pretrained(src, local_files_only=True).eval()
    enc, dec = session(out / "onnx" / "encoder_model.onnx"), session(out / "onnx" / "decoder_model_merged.onnx")
    size = model.config.encoder.image_size
    pixels = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32))
    start = model.generation_config.decoder_start_token_id or model.config.decoder_start_token_id
    worst = 0.0
    with torch.no_grad():
        states = model.encoder(pixel_values=pixels).last_hidden_state
        o_states = enc.run(None, {"pixel_values": pixels.numpy()})[0]
        worst = rel_diff(o_states, states.numpy())
        metas = {i.name: i for i in dec.get_inputs()}
        past_names = [n for n in metas if n.startswith("past_key_values.")]
        heads, head_dim = metas[past_names[0]].shape[1], metas[past_names[0]].shape[3]
        past = {n: np.zeros((2, heads, 0, head_dim), np.float32) for n in past_names}
        ids = torch.tensor([[start]] * 2)
        seq = ids
        for step in range(3):
            ref = model.decoder(input_ids=seq, encoder_hidden_states=states).logits[:, -1]
            outs = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, {
                "input_ids": ids.numpy(), "encoder_hidden_states": o_states, **past, "use_cache_branch": np.array([step > 0])})))
            worst = max(worst, rel_diff(outs["logits"][:, -1], ref.numpy()))
            past = {n: outs[n.replace("past_key_values.", "present.")] for n in past_names}
            ids = torch.from_numpy(outs["logits"][:, -1].argmax(-1)).long().unsqueeze(1)
            seq = torch.cat([seq, ids], 1)
    # The cross-attention split (checked by the tool itself: split vs merged, max |diff| <= 1e-4).
    res = subprocess.run([sys.executable, str(HERE / "split_cross_attention.py"), str(out)], capture_output=True, text=True)
    if res.returncode != 0:
        raise ImportError_(f"the cross-attention split failed:\n{res.stdout}{res.stderr}", "report this checkpoint; the merged decoder export is in place without the split.")
    return {"type": "vit-gpt2", "what": "encoder states and next-token logits over 3 steps (merged decoder, cache) on 2 generated images; split checked by split_cross_attention.py",
            "max_rel_diff": worst}


def import_blip(src: Path, out: Path) -> dict:
    from export_blip import export_blip

    meta = export_blip(src, out)
    copy_processor_files(src, out)
    return {"type": "blip", "what": "vision states and logits of a prompt step + 3 cached steps on 2 generated images (export_blip.py)",
            "max_rel_diff": meta["check"]["max_abs_diff"]}


def import_captioner(src: Path, out: Path) -> dict:
    return import_blip(src, out) if read_config(src).get("model_type") == "blip" else import_vit_gpt2(src, out)


def validate(kind: str, src: Path) -> None:
    """Cheap checks of the source before torch and the exporters load (seconds)."""
    if kind == "clip" and read_config(src).get("model_type") != "clip":
        raise ImportError_(f"{src}/config.json is not a CLIP model (model_type {read_config(src).get('model_type')!r})", "pass a CLIPModel checkpoint (model_type \"clip\").")
    if kind == "captioner" and read_config(src).get("model_type") not in ("blip", "vision-encoder-decoder"):
        raise ImportError_(f"{src}/config.json has model_type {read_config(src).get('model_type')!r}, not a captioner Kiln runs",
                           "pass a BlipForConditionalGeneration (\"blip\") or VisionEncoderDecoder (\"vision-encoder-decoder\", ViT-GPT2 style) checkpoint.")
    if kind == "vae":
        vae_source(src)
    if kind == "fid-inception":
        fid_weights(src)


# --------------------------------------------------------------------------- vae
def vae_source(src: Path) -> Path:
    for d in (src, src / "vae"):
        cfg = d / "config.json"
        if cfg.is_file() and json.loads(cfg.read_text()).get("_class_name") == "AutoencoderKL":
            return d
    raise ImportError_(f"{src} holds no diffusers AutoencoderKL (config.json with _class_name AutoencoderKL, here or in vae/)",
                       "pass a diffusers VAE directory or a pipeline directory with vae/ (e.g. `huggingface-cli download <repo> --include 'vae/*' --local-dir DIR`).")


def import_vae(src: Path, out: Path) -> dict:
    import copy

    from diffusers import AutoencoderKL
    from optimum.exporters.onnx.convert import export_models
    from optimum.exporters.onnx.model_configs import VaeDecoderOnnxConfig, VaeEncoderOnnxConfig

    vae = AutoencoderKL.from_pretrained(vae_source(src), local_files_only=True).eval()
    # The wrappers optimum.exporters.utils builds for a pipeline's VAE (what Kiln's codec loads).
    encoder = copy.deepcopy(vae)
    encoder.forward = lambda sample: {"latent_parameters": encoder.encode(x=sample)["latent_dist"].parameters}
    decoder = copy.deepcopy(vae)
    decoder.forward = lambda latent_sample: decoder.decode(z=latent_sample)
    with tempfile.TemporaryDirectory() as tmp:
        export_models(models_and_onnx_configs={
            "vae_encoder": (encoder, VaeEncoderOnnxConfig(vae.config, task="semantic-segmentation")),
            "vae_decoder": (decoder, VaeDecoderOnnxConfig(vae.config, task="semantic-segmentation")),
        }, output_dir=Path(tmp), output_names=["vae_encoder/model.onnx", "vae_decoder/model.onnx"])
        for part in ("vae_encoder", "vae_decoder"):
            (out / part).mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / part / "model.onnx", out / part / "model.onnx")
            vae.save_config(out / part)
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    size = max(down * 4, min(64, int(vae.config.sample_size)))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, vae.config.in_channels, size, size)).astype(np.float32)
    latents = rng.standard_normal((2, vae.config.latent_channels, size // down, size // down)).astype(np.float32)
    with torch.no_grad():
        params = vae.encode(torch.from_numpy(images)).latent_dist.parameters.numpy()
        decoded = vae.decode(torch.from_numpy(latents)).sample.numpy()
    o_params = session(out / "vae_encoder" / "model.onnx").run(None, {"sample": images})[0]
    o_dec = session(out / "vae_decoder" / "model.onnx").run(None, {"latent_sample": latents})[0]
    return {"type": "autoencoder-kl", "what": f"latent parameters of 2 generated {size}x{size} images and decodes of 2 generated latents",
            "max_rel_diff": max(rel_diff(o_params, params), rel_diff(o_dec, decoded))}


# --------------------------------------------------------------------------- fid-inception
def fid_weights(src: Path) -> Path:
    if src.is_file():
        return src
    found = sorted(src.glob("pt_inception-*.pth")) or sorted(src.glob("*.pth"))
    if len(found) != 1:
        raise ImportError_(f"{src} should hold exactly one FID Inception weights file (pt_inception-2015-12-05-6726825d.pth), found {[p.name for p in found]}",
                           "put pytorch-fid's weights file there (it is what pytorch-fid downloads into the torch hub cache: ~/.cache/torch/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth).")
    return found[0]


def fid_network(weights: Path):
    """pytorch-fid's own InceptionV3 (FID blocks), its weights read from `weights` instead of the URL it downloads."""
    import pytorch_fid.inception as inception

    state = torch.load(weights, map_location="cpu", weights_only=True)
    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *a, **k: state
    try:
        return inception.InceptionV3([3], resize_input=False, normalize_input=False, use_fid_inception=True).eval()
    except RuntimeError as err:
        raise ImportError_(f"{weights} is not pytorch-fid's FID Inception state dict ({str(err).splitlines()[0]})",
                           "pass pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID_WEIGHTS_URL file).") from err
    finally:
        inception.load_state_dict_from_url = original


def kiln_inception(net):
    """pool3 features; input 299x299 in [0, 255], normalised (x - 128) / 128 as clean-fid (eval/architecture.md)."""

    class KilnInception(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net((images - 128.0) / 128.0)[0].flatten(1)

    return KilnInception().eval()


def import_fid_inception(src: Path, out: Path) -> dict:
    weights = fid_weights(src)
    net = fid_network(weights)
    model = kiln_inception(net)
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 3, 299, 299),), str(out / "model.onnx"), input_names=["images"], output_names=["features"],
                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    (out / "extractor.json").write_text(json.dumps({
        "format": "kiln-feature-extractor-v1", "name": "inception-v3 FID (TF inception-2015-12-05 weights, pytorch-fid port)",
        "model": "model.onnx", "input": "images", "output": "features", "input_size": [299, 299], "input_range": [0, 255],
        "feature_dim": 2048, "preprocessing": "clean-fid-clean"}, indent=2) + "\n")
    # pytorch-fid's network on the same images (its own normalisation is off: the same (x - 128) / 128).
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, 299, 299)).astype(np.float32)
    with torch.no_grad():
        want = net((torch.from_numpy(images) - 128.0) / 128.0)[0].flatten(1).numpy()
    got = session(out / "model.onnx").run(None, {"images": images})[0]
    diff = float(np.abs(got.astype(np.float64) - want).max())
    return {"type": "pytorch-fid-inception-v3", "what": "2048-d pool3 features of 3 generated 299x299 images vs pytorch_fid.inception.InceptionV3",
            "max_abs_diff": diff, "absolute": True}


KINDS = {"clip": import_clip, "captioner": import_captioner, "vae": import_vae, "fid-inception": import_fid_inception}


def main() -> None:
    global torch
    p = argparse.ArgumentParser(description="Export a local checkpoint to Kiln's model layout and check it against PyTorch.")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("source", type=Path)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    src, out = a.source.resolve(), a.out.resolve()
    if not src.exists():
        raise ImportError_(f"{src} does not exist", "pass a local checkpoint directory (Kiln never downloads models).")
    if out == src or (out.exists() and any(out.iterdir())):
        raise ImportError_(f"the output directory {out} is {'the source' if out == src else 'not empty'}",
                           "pass a new or empty --out directory.")
    validate(a.kind, src)
    import torchvision_shim  # noqa: F401  (before transformers / diffusers / pytorch-fid)
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    out.mkdir(parents=True, exist_ok=True)
    try:
        check = KINDS[a.kind](src, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    tol = TOLERANCES[a.kind]
    diff = check.get("max_abs_diff", check.get("max_rel_diff"))
    check.update({"tolerance": tol})
    if not (diff <= tol):
        shutil.rmtree(out, ignore_errors=True)
        raise ImportError_(f"the {a.kind} export differs from the PyTorch model by {diff:.3g} (tolerance {tol}; {check['what']})",
                           "use the pinned tools (requirements-models.txt: rm -rf .venv-models && npm run setup) and check the checkpoint loads in transformers/diffusers; report it if it persists.")
    manifest = {
        "format": "kiln-model-import-v1", "kind": a.kind, "type": check.pop("type"),
        "source": {"path": str(src), "files": file_hashes(src)},
        "output": {"files": file_hashes(out, skip=(MANIFEST,))},
        "check": check,
        "tools": {t: version(t) for t in TOOLS if _installed(t)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({"kind": a.kind, "type": manifest["type"], "out": str(out), "check": check}))


def _installed(name: str) -> bool:
    try:
        version(name)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
