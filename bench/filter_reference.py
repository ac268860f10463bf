#!/usr/bin/env python3
"""Reference throughput for bench/filter.ts: the same CLIP scoring and captioning (greedy or beams) with
transformers on PyTorch (CPU), same model directory, same JPEG bytes, same thread count.

Prints one JSON line: {"rows": [{"task", "batch", "value", "cpu_ms"}], "versions": {...}} (cpu_ms: process
CPU time per item, all threads).
Needs torch + transformers + pillow (the models venv: .venv-models/bin/python, installed by setup).
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "models"))
import torchvision_shim  # noqa: E402,F401  (before transformers: see the module)
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def best_of(repeat: int, fn) -> tuple[float, float]:
    """Shortest of `repeat` timed runs and least process CPU time (all threads) of a run, in seconds."""
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return best, cpu


def clip_pairs_per_s(args, images: list[bytes], captions: list[str], batch: int) -> tuple[float, float]:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    proc = CLIPImageProcessor.from_pretrained(args.clip_dir)
    tok = CLIPTokenizerFast.from_pretrained(args.clip_dir)
    model = CLIPModel.from_pretrained(args.clip_dir).eval()

    def score(imgs: list[bytes], texts: list[str]) -> torch.Tensor:
        out = []
        for s in range(0, len(imgs), batch):
            pil = [Image.open(io.BytesIO(b)) for b in imgs[s:s + batch]]
            px = proc(images=pil, return_tensors="pt")["pixel_values"]
            enc = tok(texts[s:s + batch], padding=True, truncation=True, return_tensors="pt")
            with torch.inference_mode():
                ie = model.get_image_features(pixel_values=px)
                te = model.get_text_features(**enc)
            out.append(torch.nn.functional.cosine_similarity(ie, te))
        return torch.cat(out)

    score(images[:batch], captions[:batch])
    wall, cpu = best_of(args.repeat, lambda: score(images[:args.pairs], captions[:args.pairs]))
    return args.pairs / wall, 1000 * cpu / args.pairs


def captions_per_s(args, images: list[bytes], batch: int) -> tuple[float, float]:
    from transformers import (AutoTokenizer, BlipForConditionalGeneration, BlipImageProcessor, VisionEncoderDecoderModel,
                              ViTImageProcessor)

    blip = json.loads((Path(args.captioner_dir) / "config.json").read_text()).get("model_type") == "blip"
    proc = (BlipImageProcessor if blip else ViTImageProcessor).from_pretrained(args.captioner_dir)
    tok = AutoTokenizer.from_pretrained(args.captioner_dir)
    model = (BlipForConditionalGeneration if blip else VisionEncoderDecoderModel).from_pretrained(args.captioner_dir).eval()

    def caption(imgs: list[bytes]) -> list[str]:
        out: list[str] = []
        for s in range(0, len(imgs), batch):
            pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in imgs[s:s + batch]]
            px = proc(images=pil, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                ids = model.generate(pixel_values=px, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, do_sample=False)
            out += tok.batch_decode(ids, skip_special_tokens=True)
        return out

    caption(images[:batch])
    wall, cpu = best_of(args.repeat, lambda: caption(images[:args.captions]))
    return args.captions / wall, 1000 * cpu / args.captions


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True, help="dir of *.jpg + captions.json (written by bench/filter.ts)")
    p.add_argument("--clip-dir", required=True)
    p.add_argument("--captioner-dir", required=True)
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--captions", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--only", default="all", choices=["all", "clip", "caption"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    d = Path(args.images)
    images = [f.read_bytes() for f in sorted(d.glob("*.jpg"))]
    captions = json.loads((d / "captions.json").read_text())
    rows = []
    for b in (int(x) for x in args.batch_sizes.split(",") if args.only != "caption"):
        value, cpu_ms = clip_pairs_per_s(args, images, captions, b)
        rows.append({"task": "clip pairs/s", "batch": b, "value": value, "cpu_ms": cpu_ms})
    for b in (int(x) for x in args.batch_sizes.split(",") if args.only != "clip"):
        value, cpu_ms = captions_per_s(args, images, b)
        rows.append({"task": "captions/s", "batch": b, "value": value, "cpu_ms": cpu_ms})
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": str(args.threads)}
    print(json.dumps({"rows": rows, "versions": versions}))


if __name__ == "__main__":
    main()
