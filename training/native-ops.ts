/**
 * TensorFlow ops by name on the native backend (tfjs-node's `executeSingleOutput`), for what tfjs's
 * generic kernels do slowly or in JavaScript. Structural types only: tfjs-node is an optional,
 * setup-built package, so nothing here imports it; every function checks the active backend first.
 */
import * as tf from '@tensorflow/tfjs';

interface TfeOpAttr {
  name: string;
  type: number;
  value: unknown;
}
interface NativeBackend {
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number; TF_INT32: number };
  executeSingleOutput(name: string, attrs: TfeOpAttr[], inputs: tf.Tensor[]): tf.Tensor;
}

/** The native backend when it is the active one, else null. */
export function nativeBackend(): NativeBackend | null {
  if (tf.getBackend() !== 'tensorflow') return null;
  const be = tf.backend() as unknown as Partial<NativeBackend>;
  return typeof be.executeSingleOutput === 'function' && be.binding ? (be as NativeBackend) : null;
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
