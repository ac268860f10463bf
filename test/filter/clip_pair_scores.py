"""Independent CLIP scores for the reranking test: transformers' CLIPModel (PyTorch) on the same
CLIP directory, the same encoded images and the same texts.

stdin: {"clip_dir": DIR, "items": [{"image": PATH, "texts": [str, ...]}, ...]}
stdout: {"scores": [[cosine per text], ...]} (float32 values; cosine of the L2-normalised image and
text embeddings, as LAION/DataComp and Kiln's filter compute it).

Run in .venv-models (torch, transformers, pillow pinned in requirements-models.txt).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "models"))
import torchvision_shim  # noqa: E402,F401  (before transformers: PyPI's torchvision ops cannot load beside CPU torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast  # noqa: E402


def main() -> None:
    req = json.load(sys.stdin)
    proc = CLIPImageProcessor.from_pretrained(req["clip_dir"])
    tok = CLIPTokenizerFast.from_pretrained(req["clip_dir"])
    model = CLIPModel.from_pretrained(req["clip_dir"]).eval()
    out = []
    with torch.no_grad():
        for item in req["items"]:
            image = Image.open(item["image"]).convert("RGB")
            img = model.get_image_features(pixel_values=proc(images=[image], return_tensors="pt")["pixel_values"])
            txt = model.get_text_features(**tok(item["texts"], padding=True, truncation=True, return_tensors="pt"))
            img = img.numpy().astype(np.float64)
            txt = txt.numpy().astype(np.float64)
            img /= np.linalg.norm(img, axis=-1, keepdims=True)
            txt /= np.linalg.norm(txt, axis=-1, keepdims=True)
            out.append([float(np.float32(v)) for v in (txt @ img[0])])
    json.dump({"scores": out}, sys.stdout)


if __name__ == "__main__":
    main()
