/**
 * TensorFlow ops by name on the native backend (tfjs-node's `executeSingleOutput`), for what tfjs's
 * generic kernels do slowly, in several ops, or in JavaScript. Structural types only: tfjs-node is an
 * optional, setup-built package, so nothing here imports it; every function checks the active backend
 * first, and callers keep a generic tfjs path for wasm and cpu.
 *
 * Each op runs through tfjs's engine as a kernel registered under `Native<Op>` for the `tensorflow`
 * backend, so tensors are tracked, `tf.tidy` frees them and `tf.profile` lists them like any kernel.
 * They have no tfjs gradient: they are used inside `tf.customGrad` forward and gradient functions.
 */
import * as tf from '@tensorflow/tfjs';

interface TfeOpAttr {
  name: string;
  type: number;
  value: unknown;
}
interface OutputMetadata {
  id: number;
  shape: number[];
  dtype: number;
}
interface NativeBackend {
  binding: {
    TF_ATTR_TYPE: number;
    TF_ATTR_BOOL: number;
    TF_ATTR_INT: number;
    TF_ATTR_STRING: number;
    TF_FLOAT: number;
    TF_INT32: number;
    createTensor(shape: number[], dtype: number, values: Int32Array): number;
    deleteTensor(id: number): void;
    executeOp(name: string, attrs: TfeOpAttr[], inputIds: number[], numOutputs: number): OutputMetadata[];
  };
  executeSingleOutput(name: string, attrs: TfeOpAttr[], inputs: tf.TensorInfo[]): tf.Tensor;
  getInputTensorIds(inputs: tf.TensorInfo[]): number[];
  getDTypeInteger(dtype: tf.DataType): number;
  createOutputTensor(metadata: OutputMetadata): tf.Tensor;
  incRef(dataId: object): void;
}

const BACKEND = 'tensorflow';

/** The native backend when it is the active one (and installs the lean kernels once), else null. */
export function nativeBackend(): NativeBackend | null {
  if (tf.getBackend() !== BACKEND) return null;
  const be = tf.backend() as unknown as Partial<NativeBackend>;
  if (typeof be.executeSingleOutput !== 'function' || !be.binding) return null;
  installLeanKernels();
  return be as NativeBackend;
}

let leanInstalled = false;

/**
 * tfjs-node runs every `Reshape` and `Cast` as a TensorFlow op (plus, for Reshape, a shape tensor),
 * also when nothing changes: tfjs's gradient formulas reshape every broadcast operand's gradient to
 * the shape it already has and cast float32 gradients to float32 (about 300 such ops per step of
 * the tiny config, ~30-60 us each). A same-shape Reshape and a same-dtype Cast share the input's
 * buffer instead (what tfjs's own Identity kernel does on this backend, and what its cpu backend does
 * for every Reshape). Any other Reshape runs TensorFlow's op with a cached shape operand: tfjs-node's
 * own kernel builds, uploads and frees an int32 tensor for the shape at every call (~44 us against
 * ~10 us). Every other Cast goes to tfjs-node's kernel as before. The values are the same tensors,
 * bit for bit.
 */
function installLeanKernels(): void {
  if (leanInstalled) return;
  leanInstalled = true;
  /** Whether reshaping `shape` to `target` (which may hold one -1) leaves it as it is. */
  const sameShape = (shape: readonly number[], target: readonly number[]) => {
    if (shape.length !== target.length) return false;
    const size = shape.reduce((a, d) => a * d, 1);
    const known = target.reduce((a, d) => (d === -1 ? a : a * d), 1);
    return target.every((d, i) => (d === -1 ? known > 0 && size / known === shape[i] : d === shape[i]));
  };
  const wrap = (
    kernelName: string,
    unchanged: (x: tf.TensorInfo, attrs: tf.NamedAttrMap) => boolean,
    changed?: (be: NativeBackend, x: tf.TensorInfo, attrs: tf.NamedAttrMap) => tf.TensorInfo,
  ) => {
    const original = tf.getKernel(kernelName, BACKEND);
    if (!original) return;
    tf.unregisterKernel(kernelName, BACKEND);
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const x = args.inputs.x as tf.TensorInfo;
        const be = args.backend as unknown as NativeBackend;
        if (!unchanged(x, args.attrs ?? {}))
          return changed ? changed(be, x, args.attrs ?? {}) : original.kernelFunc(args);
        be.incRef(x.dataId);
        return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
      },
    });
  };
  wrap(
    'Reshape',
    (x, attrs) => sameShape(x.shape, attrs.shape as number[]),
    (be, x, attrs) => reshapeOp(be, x, attrs.shape as number[]),
  );
  wrap('Cast', (x, attrs) => x.dtype === attrs.dtype);
}

/**
 * Small int32 operands (Reshape's shape, Transpose's permutation), one tensor handle per value list,
 * owned by this module (not tracked by tfjs: a few bytes each, and a training run uses a few dozen).
 * Past `MAX_SHAPES` (a caller with ever-new shapes) the handles are freed and the cache starts over.
 */
const shapeHandles = new Map<string, number>();
const MAX_SHAPES = 4096;

function int32Handle(be: NativeBackend, shape: readonly number[]): number {
  const key = shape.join(',');
  let id = shapeHandles.get(key);
  if (id === undefined) {
    if (shapeHandles.size >= MAX_SHAPES) {
      for (const old of shapeHandles.values()) be.binding.deleteTensor(old);
      shapeHandles.clear();
    }
    // The handle shares this array's memory (tfjs-node's binding keeps a reference to it): give it an
    // off-heap ArrayBuffer of its own, which V8's garbage collector never moves.
    const values = new Int32Array(new ArrayBuffer(4 * Math.max(1, shape.length)), 0, shape.length);
    values.set(shape);
    id = be.binding.createTensor([shape.length], be.binding.TF_INT32, values);
    shapeHandles.set(key, id);
  }
  return id;
}

/**
 * Axes 1 and 2 of a 4-D float32 tensor swapped (TF Transpose with a cached permutation): [B, len,
 * heads, dh] <-> [B, heads, len, dh].
 */
export function swapAxes12(x: tf.Tensor): tf.Tensor {
  const kernelName = 'NativeSwapAxes12';
  if (!registered.has(kernelName)) {
    registered.add(kernelName);
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: ({ inputs, backend }) => {
        const be = backend as unknown as NativeBackend;
        const b = be.binding;
        const [out] = b.executeOp(
          'Transpose',
          [attr.float(b), { name: 'Tperm', type: b.TF_ATTR_TYPE, value: b.TF_INT32 }],
          [be.getInputTensorIds([inputs.x as tf.TensorInfo])[0]!, int32Handle(be, [0, 2, 1, 3])],
          1,
        );
        return be.createOutputTensor(out!);
      },
    });
  }
  if (x.rank !== 4) throw new Error(`swapAxes12: expected a 4-D tensor, got shape [${x.shape}]`);
  return tf.engine().runKernel(kernelName, { x }, {}) as tf.Tensor;
}

/** TensorFlow's Reshape of `x` to `shape` (no -1: tfjs resolves it before the kernel runs). */
function reshapeOp(be: NativeBackend, x: tf.TensorInfo, shape: readonly number[]): tf.TensorInfo {
  const b = be.binding;
  const [out] = b.executeOp(
    'Reshape',
    [
      { name: 'T', type: b.TF_ATTR_TYPE, value: be.getDTypeInteger(x.dtype) },
      { name: 'Tshape', type: b.TF_ATTR_TYPE, value: b.TF_INT32 },
    ],
    [be.getInputTensorIds([x])[0]!, int32Handle(be, shape)],
    1,
  );
  return be.createOutputTensor(out!);
}

/** The attribute lists the ops below need, built from the binding's enum values. */
const attr = {
  float: (b: NativeBackend['binding'], name = 'T'): TfeOpAttr => ({ name, type: b.TF_ATTR_TYPE, value: b.TF_FLOAT }),
  bool: (b: NativeBackend['binding'], name: string, value: boolean): TfeOpAttr => ({
    name,
    type: b.TF_ATTR_BOOL,
    value,
  }),
};

const registered = new Set<string>();

/** Run TensorFlow op `op` on `inputs` through the engine (kernel `Native<op>`; the attributes come with each call), one float32 output. */
function runNative(op: string, inputs: tf.Tensor[], attrs: (b: NativeBackend['binding']) => TfeOpAttr[]): tf.Tensor {
  const kernelName = `Native${op}`;
  if (!registered.has(kernelName)) {
    registered.add(kernelName);
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: ({ inputs: named, backend, attrs: a }) => {
        const be = backend as unknown as NativeBackend;
        const list = Object.keys(named)
          .sort()
          .map((k) => named[k] as tf.TensorInfo);
        return be.executeSingleOutput(
          op,
          (a!.tfAttrs as unknown as (b: NativeBackend['binding']) => TfeOpAttr[])(be.binding),
          list,
        );
      },
    });
  }
  const named: tf.NamedTensorMap = {};
  inputs.forEach((t, i) => (named[`in${i}`] = t));
  return tf
    .engine()
    .runKernel(kernelName, named, { tfAttrs: attrs as unknown as tf.NamedAttrMap[string] }) as tf.Tensor;
}

/**
 * x @ y (either adjoint), batch dimensions broadcast as NumPy (TF BatchMatMulV2): [.., n, k] @ [k, m].
 * Every product in training goes through this op. TF's MatMul is about twice as fast on the small 2-D
 * products of the tiny config (85 against 180 us at 256x64 @ 64x192), but do not use it: in
 * TensorFlow 2.18 on CPU it runs oneDNN's sgemm (through _MklMatMul, and through Eigen's contraction
 * with TF_ENABLE_ONEDNN_OPTS=0), which corrupts the heap when a signal arrives during the call
 * ("corrupted size vs. prev_size", SIGSEGV). Measured: a MatMul loop under SIGUSR2, or `node
 * --cpu-prof`, aborts within seconds; BatchMatMulV2 (oneDNN's matmul primitive) ran 160,000 calls
 * clean. test/training/signal-safety.test.ts trains under a signal storm to keep it that way.
 */
export function batchMatMul(x: tf.Tensor, y: tf.Tensor, adjX: boolean, adjY: boolean): tf.Tensor {
  return runNative('BatchMatMulV2', [x, y], (b) => [
    attr.float(b),
    attr.bool(b, 'adj_x', adjX),
    attr.bool(b, 'adj_y', adjY),
  ]);
}

/** x + bias over the last axis (TF BiasAdd, any rank). */
export function biasAdd(x: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return runNative('BiasAdd', [x, bias], (b) => [attr.float(b)]);
}

/** Sum of dy over every axis but the last (TF BiasAddGrad): the bias gradient of `biasAdd`. */
export function biasAddGrad(dy: tf.Tensor): tf.Tensor {
  return runNative('BiasAddGrad', [dy], (b) => [attr.float(b)]);
}

/**
 * Uniform [0, 1) float32 of `shape` from TensorFlow's StatelessRandomUniform (Philox): a pure
 * function of (shape, seed), computed on the device. `seed` is two int32 words.
 */
export function statelessUniform(
  be: NativeBackend,
  shape: readonly number[],
  seed: readonly [number, number],
): tf.Tensor {
  const b = be.binding;
  return tf.tidy(() =>
    be.executeSingleOutput(
      'StatelessRandomUniform',
      [
        { name: 'dtype', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_INT32 },
        { name: 'Tseed', type: b.TF_ATTR_TYPE, value: b.TF_INT32 },
      ],
      [tf.tensor1d([...shape], 'int32'), tf.tensor1d([seed[0] | 0, seed[1] | 0], 'int32')],
    ),
  );
}
