/**
 * `tf.variableGrads` with PyTorch's memory profile during the backward pass.
 *
 * tfjs's own `engine.gradients` (tfjs-core 4.22, engine.ts and tape.ts) walks the tape backwards but
 * frees nothing until the walk ends: every op's saved forward tensors and every intermediate
 * gradient stay alive, so the peak is all activations plus all activation gradients (measured: 3.4x
 * PyTorch's peak RSS on the 10.6M bench config). This is the same walk, over the same tape, with the
 * same gradient functions and accumulation order (so the numbers are identical), releasing as it
 * goes: once a node's input gradients are computed, the gradients of its outputs (no earlier node
 * reads them) and its saved tensors (kept for it alone: tfjs saves a clone per node) are disposed.
 *
 * It uses the engine's tape through `tf.engine()` (startTape / endTape / scopedRun / state.activeTape),
 * which tfjs does not document as API: when those are missing (another tfjs version), it falls
 * back to `tf.variableGrads`.
 */
import * as tf from '@tensorflow/tfjs';

interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

interface EngineTape {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
}

function engineTape(): EngineTape | null {
  const e = tf.engine() as unknown as Partial<EngineTape>;
  return typeof e.startTape === 'function' &&
    typeof e.endTape === 'function' &&
    typeof e.scopedRun === 'function' &&
    typeof e.state?.gradientDepth === 'number'
    ? (e as EngineTape)
    : null;
}

/**
 * Gradients of the scalar `f()` with respect to `vars`, keyed by variable name (as `tf.variableGrads`).
 * `watch`, filled by `f` with tensors it creates, asks for the gradient of the result with respect to
 * each of them too, from the same backward pass (`watched`, in order; null where none flows, or all
 * null when tfjs's own variableGrads had to run).
 */
export function variableGrads(
  f: () => tf.Scalar,
  vars: tf.Variable[],
  watch: tf.Tensor[] = [],
): { value: tf.Scalar; grads: tf.NamedTensorMap; watched: (tf.Tensor | null)[] } {
  const engine = engineTape();
  if (!engine || engine.state.gradientDepth !== 0)
    return { ...tf.variableGrads(f, vars), watched: watch.map(() => null) };
  const trainable = vars.filter((v) => v.trainable);
  const y = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () => engine.tidy('forward', f),
  );
  if (!(y instanceof tf.Tensor) || y.rank !== 0)
    throw new Error(`variableGrads: f must return a scalar, got rank ${(y as tf.Tensor).rank}`);
  const tape = engine.state.activeTape ?? [];
  const nodes = nodesFromXToY(tape, trainable, y);
  const out = engine.tidy('backward', () => {
    const acc = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
    const keep = new Set([...trainable, ...watch].map((v) => v.id));
    try {
      for (let i = nodes.length - 1; i >= 0; i--) {
        const node = nodes[i]!;
        if (!node.gradient)
          throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const inputGradients = node.gradient(node.outputs.map((o) => acc.get(o.id) ?? null));
        for (const name in node.inputs) {
          const make = inputGradients[name];
          if (!make) throw new Error(`Cannot backprop through input ${name} of ${node.kernelName}.`);
          const dx = engine.tidy(() => make());
          const x = node.inputs[name]!;
          const prev = acc.get(x.id);
          if (prev) {
            acc.set(x.id, tf.add(prev, dx));
            prev.dispose();
            dx.dispose();
          } else {
            acc.set(x.id, dx);
          }
        }
        // No earlier node reads this node's output gradients or its saved tensors.
        for (const o of node.outputs) {
          if (keep.has(o.id)) continue;
          acc.get(o.id)?.dispose();
          acc.delete(o.id);
        }
        for (const t of node.saved ?? []) t.dispose();
      }
    } finally {
      for (const node of tape) for (const t of node.saved ?? []) t.dispose();
      engine.state.activeTape = null;
    }
    const grads: tf.NamedTensorMap = {};
    for (const v of trainable) {
      const g = acc.get(v.id);
      if (g) grads[v.name] = g;
    }
    if (Object.keys(grads).length === 0)
      throw new Error('Cannot find a connection between any variable and the result of the loss function.');
    const watched: tf.NamedTensorMap = {};
    watch.forEach((t, i) => {
      const g = acc.get(t.id);
      if (g) watched[i] = g;
    });
    return { value: y as tf.Scalar, grads, watched };
  });
  return { value: out.value, grads: out.grads, watched: watch.map((_, i) => out.watched[i] ?? null) };
}

/** The tape nodes on a path from `xs` to `y`, their inputs pruned to those that depend on `xs` (tfjs's getFilteredNodesXToY). */
function nodesFromXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}
