"""Import torchvision's Python models without its compiled ops (import this before transformers / diffusers / pytorch-fid).

PyPI's torchvision wheel is a CUDA build: its `_C` ops library cannot load next to the CPU torch wheel the
models venv uses (libtorch_cuda.so is absent), and torchvision's `_meta_registrations` then fails on import
("operator torchvision::nms does not exist"), which breaks every package that imports torchvision. Nothing
Kiln exports uses those ops (nms, roi_align, ...): pytorch-fid's Inception network is plain torch modules.
So that one module is replaced by an empty one; torchvision itself warns that its ops are unavailable.
"""
from __future__ import annotations

import sys
import types
import warnings

try:
    import torch

    torch.ops.load_library  # noqa: B018 (torch present)
    from importlib.util import find_spec

    if find_spec("torchvision") is not None and "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchvision  # noqa: F401
except ImportError:
    pass
