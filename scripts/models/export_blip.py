#!/usr/bin/env python3
"""Export a BLIP captioner (transformers' BlipForConditionalGeneration) to the ONNX layout Kiln runs.

BLIP = a ViT image encoder + a BERT-style text decoder with cross-attention. Kiln's decoding loop
(datasets/filter/beam-decoder.ts) runs three graphs, written under <out>/onnx/:

  encoder_model.onnx          pixel_values -> last_hidden_state (the vision model's output)
  decoder_cross_kv.onnx       encoder_hidden_states -> cross_kv.N.{key,value} per decoder layer:
                              the cross-attention keys/values, computed once per image
  decoder_with_past_xkv.onnx  input_ids + past_key_values.N.{key,value} (self-attention cache, may
                              be empty) + cross_kv.N.{key,value} -> logits + present.N.{key,value}
  decoder_xkv.json            the split's description (the same format as
                              split_cross_attention.py writes for ViT-GPT2, `source: null`: there is
                              no merged decoder), with the sha256 of both decoder graphs

The decoder graph is the text decoder's forward written out with its own modules' weights (the
embeddings, each layer's self-attention with an explicit cache, cross-attention on the precomputed
keys/values, feed-forward, the LM head), with transformers' masking (-10000 added to future
positions). The config, tokenizer and preprocessor files are copied next to the graphs.

Check (always run): random images through the PyTorch model and the graphs, a whole-prefix first
step and a few cached steps; the logits must agree within TOLERANCE (max |diff|) or the export fails.

Usage (the fixtures / models venv: torch, transformers, onnx, onnxruntime):
  python scripts/models/export_blip.py <hf-blip-dir> [--out <dir>]   (default: in place)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchvision_shim  # noqa: E402,F401  (before transformers)

ENCODER = "encoder_model.onnx"
CROSS_KV = "decoder_cross_kv.onnx"
DECODER = "decoder_with_past_xkv.onnx"
META = "decoder_xkv.json"
FORMAT = 1
# Logits of the ONNX graphs against PyTorch's: fp32 kernels differ by ~1e-6 at the tiny size and
# ~1e-5 at BLIP-base's; 1e-4 x max(1, |logit| scale) is far below any token decision that matters.
TOLERANCE = 1e-4
OPSET = 17
COPY = ["config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "vocab.txt", "processor_config.json"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class VisionEncoder(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.vision = model.vision_model

    def forward(self, pixel_values):
        return self.vision(pixel_values=pixel_values)[0]


def heads(layer_attention) -> tuple[int, int]:
    return layer_attention.num_attention_heads, layer_attention.attention_head_size


def split_heads(x, nh: int, hd: int):
    b = x.shape[0]
    return x.view(b, -1, nh, hd).transpose(1, 2)


class CrossKv(nn.Module):
    """encoder_hidden_states -> each decoder layer's cross-attention keys and values [B, heads, S, head_dim]."""

    def __init__(self, text_decoder) -> None:
        super().__init__()
        self.layers = text_decoder.bert.encoder.layer

    def forward(self, encoder_hidden_states):
        out = []
        for layer in self.layers:
            ca = layer.crossattention.self
            nh, hd = heads(ca)
            out.append(split_heads(ca.key(encoder_hidden_states), nh, hd))
            out.append(split_heads(ca.value(encoder_hidden_states), nh, hd))
        return tuple(out)


class Decoder(nn.Module):
    """One decoding step of BlipTextLMHeadModel (absolute positions) on an explicit cache."""

    def __init__(self, text_decoder) -> None:
        super().__init__()
        bert = text_decoder.bert
        if getattr(bert.embeddings, "position_embedding_type", "absolute") != "absolute":
            raise SystemExit("export_blip: only absolute position embeddings are supported (position_embedding_type in text_config). "
                             "Fix: use a BLIP checkpoint with absolute positions (every released BLIP captioner has them).")
        self.emb = bert.embeddings
        self.layers = bert.encoder.layer
        self.cls = text_decoder.cls

    @staticmethod
    def attend(q, k, v, mask):
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3)
        return ctx.reshape(ctx.shape[0], ctx.shape[1], ctx.shape[2] * ctx.shape[3])

    def forward(self, input_ids, *flat):
        n = len(self.layers)
        past, cross = flat[: 2 * n], flat[2 * n:]
        steps = input_ids.shape[1]
        offset = past[0].shape[2]
        positions = torch.arange(steps, dtype=torch.long) + offset
        h = self.emb.word_embeddings(input_ids) + self.emb.position_embeddings(positions).unsqueeze(0)
        h = self.emb.LayerNorm(h)
        # transformers: (1 - causal) * -10000 added to the scores (future positions of the prefix).
        keys = torch.arange(steps + offset, dtype=torch.long)
        mask = (keys.unsqueeze(0) > positions.unsqueeze(1)).to(h.dtype) * -10000.0
        presents = []
        for i, layer in enumerate(self.layers):
            sa = layer.attention.self
            nh, hd = heads(sa)
            q = split_heads(sa.query(h), nh, hd)
            k = torch.cat([past[2 * i], split_heads(sa.key(h), nh, hd)], dim=2)
            v = torch.cat([past[2 * i + 1], split_heads(sa.value(h), nh, hd)], dim=2)
            presents += [k, v]
            a = layer.attention.output(self.attend(q, k, v, mask), h)
            ca = layer.crossattention.self
            q2 = split_heads(ca.query(a), nh, hd)
            c = layer.crossattention.output(self.attend(q2, cross[2 * i], cross[2 * i + 1], None), a)
            h = layer.output(layer.intermediate(c), c)
        return (self.cls(h), *presents)


def export(model, out: Path) -> dict:
    import onnx

    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    tc = model.config.text_config
    vc = model.config.vision_config
    td = model.text_decoder
    n = tc.num_hidden_layers
    nh = tc.num_attention_heads
    hd = tc.hidden_size // nh
    size = vc.image_size
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        states = model.vision_model(pixel_values=pixels)[0]
    common = dict(opset_version=OPSET, dynamo=False, do_constant_folding=True)
    torch.onnx.export(VisionEncoder(model), (pixels,), str(onnx_dir / ENCODER), input_names=["pixel_values"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"pixel_values": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}}, **common)
    kv_names = [f"cross_kv.{i}.{w}" for i in range(n) for w in ("key", "value")]
    torch.onnx.export(CrossKv(td), (states,), str(onnx_dir / CROSS_KV), input_names=["encoder_hidden_states"],
                      output_names=kv_names,
                      dynamic_axes={"encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
                                    **{k: {0: "batch_size", 2: "encoder_sequence_length"} for k in kv_names}}, **common)
    past_names = [f"past_key_values.{i}.{w}" for i in range(n) for w in ("key", "value")]
    present_names = [p.replace("past_key_values.", "present.") for p in past_names]
    with torch.no_grad():
        cross = CrossKv(td)(states)
    ids = torch.tensor([[tc.bos_token_id, 5, 6]] * 2)
    past = tuple(torch.randn(2, nh, 2, hd) for _ in past_names)
    torch.onnx.export(Decoder(td), (ids, *past, *cross), str(onnx_dir / DECODER),
                      input_names=["input_ids", *past_names, *kv_names], output_names=["logits", *present_names],
                      dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"},
                                    **{p: {0: "batch_size", 2: "past_sequence_length"} for p in past_names},
                                    **{p: {0: "batch_size", 2: "total_sequence_length"} for p in present_names},
                                    **{k: {0: "batch_size", 2: "encoder_sequence_length"} for k in kv_names}}, **common)
    for name in (ENCODER, CROSS_KV, DECODER):
        onnx.checker.check_model(str(onnx_dir / name))
    return {"layers": n, "heads": nh, "head_dim": hd, "kv_names": kv_names, "past_names": past_names}


def check(model, out: Path, shapes: dict, seed: int = 0) -> float:
    """Max |diff| of logits (graphs vs PyTorch) over a whole-prefix step and 3 cached steps, batch 2."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = {k: ort.InferenceSession(str(out / "onnx" / f), opts, providers=["CPUExecutionProvider"]) for k, f in
            (("enc", ENCODER), ("xkv", CROSS_KV), ("dec", DECODER))}
    tc = model.config.text_config
    size = model.config.vision_config.image_size
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(2, 3, size, size, generator=gen) * 4 - 2
    prefix = torch.tensor([[tc.bos_token_id] + [int(t) for t in torch.randint(0, tc.vocab_size, (3,), generator=gen)]] * 2)
    worst = 0.0
    with torch.no_grad():
        states = model.vision_model(pixel_values=pixels)[0]
        o_states = sess["enc"].run(None, {"pixel_values": pixels.numpy()})[0]
        worst = max(worst, float(np.abs(o_states - states.numpy()).max()))
        xkv = dict(zip(shapes["kv_names"], sess["xkv"].run(None, {"encoder_hidden_states": o_states})))
        past = {p: np.zeros((2, shapes["heads"], 0, shapes["head_dim"]), np.float32) for p in shapes["past_names"]}
        ids = prefix
        pt_past = None
        for _ in range(4):
            ref = model.text_decoder(input_ids=ids, encoder_hidden_states=states, past_key_values=pt_past, use_cache=True,
                                     is_decoder=True, return_dict=True)
            pt_past = ref.past_key_values
            outs = sess["dec"].run(None, {"input_ids": ids.numpy(), **past, **xkv})
            logits = ref.logits.numpy()
            scale = max(1.0, float(np.abs(logits).max()))
            worst = max(worst, float(np.abs(outs[0] - logits).max()) / scale)
            past = {p: v for p, v in zip(shapes["past_names"], outs[1:])}
            ids = torch.from_numpy(outs[0][:, -1].argmax(-1)).long().unsqueeze(1)
    return worst


def export_blip(src: Path, out: Path) -> dict:
    """Export, check and describe; returns the decoder_xkv.json content."""
    from transformers import BlipForConditionalGeneration

    model = BlipForConditionalGeneration.from_pretrained(src, local_files_only=True, attn_implementation="eager").eval()
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        for name in COPY:
            if (src / name).is_file():
                shutil.copy(src / name, out / name)
    shapes = export(model, out)
    diff = check(model, out, shapes)
    if not diff <= TOLERANCE:
        raise SystemExit(f"export_blip: the ONNX graphs differ from the PyTorch model by {diff:.3g} (relative max |diff| of logits; "
                         f"tolerance {TOLERANCE}). Fix: use torch/transformers/onnxruntime at the pinned versions (requirements-models.txt) "
                         "and report the checkpoint if it persists.")
    onnx_dir = out / "onnx"
    meta = {
        "format": FORMAT,
        "generator": "scripts/models/export_blip.py",
        "model_type": "blip",
        "source": None,
        "source_sha256": None,
        "cross_kv": f"onnx/{CROSS_KV}",
        "cross_kv_sha256": sha256(onnx_dir / CROSS_KV),
        "decoder": f"onnx/{DECODER}",
        "decoder_sha256": sha256(onnx_dir / DECODER),
        "first_step": "split",
        "per_image": True,
        "frontier": [{"output": k, "input": k, "dtype": "float32", "kind": "rows"} for k in shapes["kv_names"]],
        "check": {"max_abs_diff": diff, "tolerance": TOLERANCE, "steps": 4},
    }
    (onnx_dir / META).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path, help="a local BlipForConditionalGeneration directory (config.json, weights, tokenizer, preprocessor)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: the model directory)")
    a = p.parse_args()
    src = a.model_dir.resolve()
    if not (src / "config.json").is_file():
        raise SystemExit(f"export_blip: {src}/config.json is missing. Fix: pass a BLIP model directory "
                         "(e.g. from `huggingface-cli download Salesforce/blip-image-captioning-base --local-dir DIR`).")
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "blip":
        raise SystemExit(f"export_blip: {src}/config.json has model_type {cfg.get('model_type')!r}, not 'blip'. "
                         "Fix: pass a BlipForConditionalGeneration checkpoint.")
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    meta = export_blip(src, (a.out or src).resolve())
    print(f"export_blip: wrote {(a.out or src)}/onnx ({ENCODER}, {CROSS_KV}, {DECODER}, {META}); "
          f"logits max |diff| vs PyTorch {meta['check']['max_abs_diff']:.3g}", file=sys.stderr)


if __name__ == "__main__":
    main()
