#!/usr/bin/env python3
"""Split the step-invariant part (cross-attention keys/values) out of an encoder-decoder's decoder.

Optimum's merged decoder export (onnx/decoder_model_merged.onnx, `--task image-to-text-with-past`)
takes `encoder_hidden_states` at every decoding step and its cache holds self-attention only, so each
step recomputes every layer's cross-attention keys/values over all encoder tokens. transformers
caches them. This tool rewrites the with-past decoder into two graphs, model-agnostically:

  onnx/decoder_cross_kv.onnx       encoder_hidden_states -> the step-invariant "frontier" tensors
  onnx/decoder_with_past_xkv.onnx  input_ids + self-attention past + frontier -> logits + present.*
  onnx/decoder_xkv.json            frontier names/dtypes, sha256 of the source and both graphs

A tensor is step-invariant when it is computed only from `encoder_hidden_states` and
initializers/constants (never from input_ids, the past or masks); the frontier is the set of
step-invariant tensors that step-dependent nodes (or graph outputs) consume. Pure-constant
subexpressions stay in the decoder. Each graph keeps only the initializers its nodes use (the
cross-attention key/value projections end up in decoder_cross_kv.onnx only).

The result is checked with onnxruntime: the original decoder and the split pair run a few steps on
random inputs and logits/presents must agree (max |diff| printed). It also tries the split decoder
with an empty past for the first (whole-prefix) step; `first_step` in the JSON says whether Kiln may
use it there ("split") or must run the merged decoder's no-past branch ("merged").

Usage (needs onnx, onnxruntime and numpy; the models venv, .venv-models, has them):
  .venv-models/bin/python scripts/models/split_cross_attention.py <model-dir>
<model-dir>/onnx/decoder_model_merged.onnx is read (or decoder_with_past_model.onnx when there is no
merged file). Rerun it whenever the decoder changes: Kiln refuses a split whose recorded sha256 no
longer matches the decoder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

STATES = "encoder_hidden_states"
CROSS_KV = "decoder_cross_kv.onnx"
SPLIT_DECODER = "decoder_with_past_xkv.onnx"
META = "decoder_xkv.json"
TOLERANCE = 1e-4
FORMAT = 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def outer_refs(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads from enclosing scopes."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    refs: set[str] = set()
    for n in graph.node:
        refs.update(node_deps(n) - defined)
        defined.update(n.output)
    refs.update(o.name for o in graph.output if o.name not in defined)
    return refs


def node_deps(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads: explicit inputs and what its subgraphs take from outer scope."""
    deps = {i for i in node.input if i}
    for g in subgraphs(node):
        deps |= outer_refs(g)
    return deps


def with_past_graph(model: onnx.ModelProto) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Nodes, initializers, inputs and outputs of the decoder with a past (the merged If's cache branch inlined)."""
    g = model.graph
    past = {i.name for i in g.input if i.name.startswith("past_key_values")}
    if not past:
        raise SystemExit("the decoder has no past_key_values.* inputs: not a decoder with a self-attention cache")
    ifs = [n for n in g.node if n.op_type == "If"]
    if not ifs:
        return list(g.node), list(g.initializer), list(g.input), list(g.output)
    if len(ifs) != 1:
        raise SystemExit(f"expected one top-level If (use_cache_branch) in the merged decoder, found {len(ifs)}")
    node = ifs[0]
    branches = {a.name: a.g for a in node.attribute}
    then_g, else_g = branches["then_branch"], branches["else_branch"]
    # The branch taken with a cache is the one that reads the past; the condition must be a graph input.
    cond = node.input[0]
    cond_input = next((i for i in g.input if i.name == cond), None)
    if cond_input is None or cond_input.type.tensor_type.elem_type != onnx.TensorProto.BOOL:
        raise SystemExit(f"the If condition {cond!r} is not a boolean graph input (use_cache_branch)")
    if not (outer_refs(then_g) & past) or (outer_refs(else_g) & past):
        raise SystemExit("cannot tell the with-past branch: expected then_branch to read past_key_values.* and else_branch not to")
    nodes: list[onnx.NodeProto] = []
    for n in g.node:
        if n is not node:
            nodes.append(n)
            continue
        nodes.extend(then_g.node)
        for b_out, if_out in zip(then_g.output, node.output):
            if b_out.name != if_out:
                nodes.append(helper.make_node("Identity", [b_out.name], [if_out], name=f"xkv_out_{if_out}"))
    inits = list(g.initializer) + list(then_g.initializer)
    used = set().union(*(node_deps(n) for n in nodes))
    inputs = [i for i in g.input if i.name in used or i.name in past]
    return nodes, inits, inputs, list(g.output)


def split(model: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto, list[str]]:
    nodes, inits, inputs, outputs = with_past_graph(model)
    input_names = {i.name for i in inputs}
    if STATES not in input_names:
        raise SystemExit(f"the decoder has no {STATES} input")
    init_by_name = {t.name: t for t in inits}
    # Classify every tensor: constant (initializers only), invariant (encoder states + constants), step.
    kind: dict[str, str] = {t: "const" for t in init_by_name}
    for i in inputs:
        kind[i.name] = "inv" if i.name == STATES else "step"
    producer: dict[str, onnx.NodeProto] = {}
    for n in nodes:
        deps = node_deps(n)
        unknown = [d for d in deps if d not in kind]
        if unknown:
            raise SystemExit(f"node {n.name} reads undefined tensors {unknown[:3]} (graph not topologically sorted?)")
        k = "step" if any(kind[d] == "step" for d in deps) else "inv" if any(kind[d] == "inv" for d in deps) else "const"
        for o in n.output:
            if o:
                kind[o] = k
                producer[o] = n
    frontier: list[str] = []
    for n in nodes:
        if kind[n.output[0]] == "step":
            frontier.extend(d for d in sorted(node_deps(n)) if kind[d] == "inv" and d not in frontier)
    frontier.extend(o.name for o in outputs if kind.get(o.name) == "inv" and o.name not in frontier)
    if not frontier:
        raise SystemExit("no step-invariant tensor feeds the decoding steps: nothing to split")

    def closure(targets: list[str], stop: set[str]) -> list[onnx.NodeProto]:
        """The nodes needed to compute `targets`, in graph order, not walking past `stop`."""
        need: set[int] = set()
        todo = [t for t in targets if t not in stop]
        seen: set[str] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop or t not in producer:
                continue
            seen.add(t)
            n = producer[t]
            if id(n) not in need:
                need.add(id(n))
                todo.extend(node_deps(n))
        return [n for n in nodes if id(n) in need]

    def used_inits(ns: list[onnx.NodeProto]) -> list[onnx.TensorProto]:
        used = set().union(*(node_deps(n) for n in ns)) if ns else set()
        return [init_by_name[t] for t in init_by_name if t in used]

    # Types of the frontier tensors from ONNX shape inference on the inlined with-past graph.
    flat = helper.make_graph(nodes, "with_past", inputs, outputs, inits)
    flat_model = helper.make_model(flat, opset_imports=model.opset_import, ir_version=model.ir_version)
    flat_model.graph.output.extend(helper.make_empty_tensor_value_info(f) for f in frontier if f not in {o.name for o in outputs})
    inferred = shape_inference.infer_shapes(flat_model, data_prop=False)
    info = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    infos = []
    for f in frontier:
        v = info.get(f)
        if v is None or v.type.tensor_type.elem_type == 0:
            raise SystemExit(f"shape inference gave no type for frontier tensor {f}")
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(v)
        infos.append(vi)

    cross_nodes = closure(frontier, {STATES})
    states_in = next(i for i in inputs if i.name == STATES)
    cross = helper.make_graph(cross_nodes, "decoder_cross_kv", [states_in], infos, used_inits(cross_nodes))
    out_names = [o.name for o in outputs]
    dec_nodes = closure(out_names, set(frontier))
    # A graph output that is itself step-invariant goes through an Identity (an input cannot be an output).
    renamed = {f: f"{f}__xkv" for f in frontier if f in out_names}
    for f, r in renamed.items():
        dec_nodes = [helper.make_node("Identity", [r], [f], name=f"xkv_passthrough_{f}")] + dec_nodes
    dec_inputs = [i for i in inputs if i.name != STATES and i.name != "use_cache_branch"]
    for vi in infos:
        v = onnx.ValueInfoProto()
        v.CopyFrom(vi)
        v.name = renamed.get(vi.name, vi.name)
        dec_inputs.append(v)
    used = set().union(*(node_deps(n) for n in dec_nodes))
    dec_inputs = [i for i in dec_inputs if i.name in used or i.name.startswith("past_key_values")]
    if any(i.name == STATES for i in dec_inputs) or STATES in used:
        raise SystemExit(f"the split decoder still reads {STATES} directly")
    dec = helper.make_graph(dec_nodes, "decoder_with_past_xkv", dec_inputs, outputs, used_inits(dec_nodes))

    def as_model(graph: onnx.GraphProto) -> onnx.ModelProto:
        m = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version,
                              producer_name="kiln split_cross_attention.py")
        m.functions.extend(model.functions)
        onnx.checker.check_model(m)
        return m

    return as_model(cross), as_model(dec), [renamed.get(f, f) for f in frontier]


ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def check(model_dir: Path, source: Path, cross_path: Path, dec_path: Path, frontier: list[str], rng: np.random.Generator) -> dict:
    """Run the source decoder and the split pair for a few steps; return the max |diff| per step."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
    cross = ort.InferenceSession(str(cross_path), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(dec_path), opts, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in src.get_inputs()}
    merged = "use_cache_branch" in ins
    past_names = [n for n in ins if n.startswith("past_key_values")]
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").exists() else {}
    dec_cfg = config.get("decoder", config)
    enc_cfg = config.get("encoder", {})
    hidden = ins[STATES].shape[2] if isinstance(ins[STATES].shape[2], int) else dec_cfg.get("n_embd", dec_cfg.get("hidden_size"))
    seq = (enc_cfg.get("image_size", 0) // max(1, enc_cfg.get("patch_size", 1))) ** 2 + 1 if enc_cfg.get("image_size") else 9
    pshape = ins[past_names[0]].shape
    heads = pshape[1] if isinstance(pshape[1], int) else dec_cfg.get("n_head", dec_cfg.get("num_attention_heads"))
    head_dim = pshape[3] if isinstance(pshape[3], int) else hidden // heads
    vocab = dec_cfg.get("vocab_size", 50)
    batch, prefix, steps = 3, 2, 4
    states = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
    empty = {n: np.zeros((batch, heads, 0, head_dim), np.float32) for n in past_names}
    ids0 = rng.integers(0, vocab, (batch, prefix), dtype=np.int64)
    outs_src = [o.name for o in src.get_outputs()]
    xkv = dict(zip(frontier, cross.run(frontier_outputs(frontier), {STATES: states})))
    kinds = dict(zip(frontier, classify(cross, frontier, states)))
    per_image = all(v != "other" for v in kinds.values())
    if per_image:
        # Beams: the frontier of 2 images repeated per beam must equal the frontier of the repeated states.
        k = 3
        want = cross.run(frontier_outputs(frontier), {STATES: np.repeat(states[:2], k, axis=0)})
        got = expand(dict(zip(frontier, cross.run(frontier_outputs(frontier), {STATES: states[:2]}))), kinds, k)
        per_image = all(np.array_equal(got[f], w) for f, w in zip(frontier, want))
    print(f"  frontier kinds: {', '.join(f'{v} {list(kinds.values()).count(v)}' for v in sorted(set(kinds.values())))}; "
          f"per-image cross_kv repeated per beam {'matches' if per_image else 'is not possible'}")

    def run_src(ids, past, with_past):
        feed = {"input_ids": ids, STATES: states, **past}
        if merged:
            feed["use_cache_branch"] = np.array([with_past])
        return dict(zip(outs_src, src.run(None, {k: v for k, v in feed.items() if k in ins})))

    def run_split(ids, past):
        return dict(zip(outs_src, dec.run(outs_src, {"input_ids": ids, **past, **xkv})))

    def diff(a, b):
        return max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in outs_src)

    def as_past(out):
        return {n: out[n.replace("past_key_values.", "present.")] for n in past_names}

    first = run_src(ids0, empty, False) if merged else None
    first_step, first_diff = "merged", None
    try:
        split_first = run_split(ids0, empty)
        first_diff = diff(first, split_first) if first else 0.0
        # Only a merged source has a no-past branch to compare the whole-prefix step against.
        if first is not None and first_diff <= TOLERANCE:
            first_step = "split"
    except Exception as err:  # noqa: BLE001 - any ORT failure means: keep the merged no-past branch for step 0
        print(f"  split decoder with an empty past failed ({type(err).__name__}); step 0 stays on the merged decoder")
    if first is None:
        first = run_src(ids0, empty, True)
    print(f"  step 0 (prefix {prefix} tokens): split decoder with empty past max |diff| = {first_diff}  -> first_step {first_step}")
    past_a, past_b = as_past(first), as_past(first)
    diffs = []
    for s in range(1, steps):
        ids = rng.integers(0, vocab, (batch, 1), dtype=np.int64)
        a, b = run_src(ids, past_a, True), run_split(ids, past_b)
        d = diff(a, b)
        diffs.append(d)
        print(f"  step {s}: logits/presents max |diff| = {d:.3g}")
        if d > TOLERANCE:
            raise SystemExit(f"split decoder disagrees with {source.name} at step {s}: max |diff| {d} > {TOLERANCE}")
        past_a, past_b = as_past(a), as_past(b)
    return {"kinds": kinds, "per_image": per_image, "batch": batch, "encoder_tokens": seq, "steps": steps, "max_abs_diff": max(diffs), "first_step_max_abs_diff": first_diff, "first_step": first_step}


def classify(cross, frontier: list[str], states: np.ndarray) -> list[str]:
    """How each frontier tensor depends on the batch, from runs on 2 rows and on those rows + 1:
    `rows` (axis 0 is the row: one image's block can be repeated per beam), `batch_size` (an integer
    tensor holding the row count), `fixed` (the same for any batch), `other` (none of these)."""
    names = frontier_outputs(frontier)
    two = cross.run(names, {STATES: states[:2]})
    three = cross.run(names, {STATES: states[:3]})
    kinds = []
    for a, b in zip(two, three):
        if a.shape == b.shape and np.issubdtype(a.dtype, np.integer) and a.size and np.all(a == 2) and np.all(b == 3):
            kinds.append("batch_size")
        elif a.shape == b.shape and np.array_equal(a, b):
            kinds.append("fixed")
        elif a.ndim >= 1 and a.shape[0] == 2 and b.shape[0] == 3 and a.shape[1:] == b.shape[1:] and np.allclose(a, b[:2], rtol=0, atol=1e-6):
            kinds.append("rows")
        else:
            kinds.append("other")
    return kinds


def expand(xkv: dict[str, np.ndarray], kinds: dict[str, str], k: int) -> dict[str, np.ndarray]:
    """Frontier tensors of n images -> of n x k rows (row = image * k + beam), as Kiln does it."""
    out = {}
    for name, t in xkv.items():
        kind = kinds[name]
        out[name] = np.repeat(t, k, axis=0) if kind == "rows" else t * k if kind == "batch_size" else t
    return out


def frontier_outputs(frontier: list[str]) -> list[str]:
    return [f[: -len("__xkv")] if f.endswith("__xkv") else f for f in frontier]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx_dir = a.model_dir / "onnx"
    source = onnx_dir / "decoder_model_merged.onnx"
    if not source.exists():
        source = onnx_dir / "decoder_with_past_model.onnx"
    if not source.exists():
        sys.exit(f"{onnx_dir} has neither decoder_model_merged.onnx nor decoder_with_past_model.onnx")
    print(f"splitting {source}")
    model = onnx.load(str(source))
    cross, dec, frontier = split(model)
    cross_path, dec_path = onnx_dir / CROSS_KV, onnx_dir / SPLIT_DECODER
    onnx.save(cross, str(cross_path))
    onnx.save(dec, str(dec_path))
    print(f"  frontier: {len(frontier)} tensors; {CROSS_KV} {cross_path.stat().st_size} bytes, {SPLIT_DECODER} {dec_path.stat().st_size} bytes")
    checked = check(a.model_dir, source, cross_path, dec_path, frontier, np.random.default_rng(a.seed))
    types = {v.name: v.type.tensor_type.elem_type for v in dec.graph.input}
    meta = {
        "format": FORMAT,
        "tool": "scripts/models/split_cross_attention.py",
        "source": f"onnx/{source.name}",
        "source_sha256": sha256(source),
        "cross_kv": f"onnx/{CROSS_KV}",
        "cross_kv_sha256": sha256(cross_path),
        "decoder": f"onnx/{SPLIT_DECODER}",
        "decoder_sha256": sha256(dec_path),
        "first_step": checked["first_step"],
        # true: Kiln may run decoder_cross_kv.onnx once per image and repeat it per beam (see `kind`).
        "per_image": checked["per_image"],
        # cross_kv output name -> split decoder input name (equal unless a graph output is step-invariant).
        "frontier": [{"output": o, "input": f, "dtype": onnx.helper.tensor_dtype_to_np_dtype(types[f]).name, "kind": checked["kinds"][f]}
                     for o, f in zip(frontier_outputs(frontier), frontier)],
        "check": {k: v for k, v in checked.items() if k != "kinds"},
    }
    (onnx_dir / META).write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  wrote {onnx_dir / META} (first_step {checked['first_step']}, max |diff| {checked['max_abs_diff']:.3g})")


if __name__ == "__main__":
    main()
