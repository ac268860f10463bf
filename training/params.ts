/**
 * Named trainable parameters in two optimiser groups (`denoiser`, `text`). Names are stable and
 * are the safetensors tensor names in checkpoints; linear weights use the PyTorch layout
 * [out_features, in_features], so the text encoder's names and shapes match a Hugging Face CLIP
 * text tower (`text_model.encoder.layers.0.self_attn.q_proj.weight`...).
 *
 * Initial values are a pure function of (seed, parameter name): adding a parameter never changes
 * the initial value of another.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from './rng.js';
import type { NamedArray, TensorSource } from './safetensors.js';
import { byName, deviceSource } from './tensor-source.js';

export type ParamGroup = 'denoiser' | 'text';

export type ParamInit =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'normal'; std: number }
  /** Glorot/Xavier uniform over the two trailing dims (fan_out, fan_in). */
  | { kind: 'xavier' }
  | { kind: 'values'; data: Float32Array };

export interface Param {
  name: string;
  group: ParamGroup;
  shape: number[];
  variable: tf.Variable;
}

export class ParamStore {
  private readonly params = new Map<string, Param>();
  private readonly byVariable = new Map<string, Param>();
  /** Bumped by `add` and `assign`, so holders of derived copies (the optimiser's flat view) know to rebuild. */
  version = 0;

  constructor(private readonly seed: number) {}

  /** Create a parameter; its initial value comes from `Rng.derive(seed, 'init', name)`. */
  add(name: string, group: ParamGroup, shape: number[], init: ParamInit): tf.Variable {
    if (this.params.has(name)) throw new Error(`parameter ${name} is defined twice`);
    const data = initialValues(Rng.derive(this.seed, 'init', name), shape, init);
    const variable = tf.variable(tf.tensor(data, shape, 'float32'), true);
    const p: Param = { name, group, shape, variable };
    this.params.set(name, p);
    this.byVariable.set(variable.name, p);
    this.version += 1;
    return variable;
  }

  get(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new Error(`no parameter named ${name}`);
    return p.variable;
  }

  has(name: string): boolean {
    return this.params.has(name);
  }

  /** The parameter behind a tfjs variable name (as keyed by `tf.variableGrads`). */
  byVariableName(variableName: string): Param | undefined {
    return this.byVariable.get(variableName);
  }

  /** All parameters in definition order (the order the optimiser walks them: deterministic). */
  list(group?: ParamGroup): Param[] {
    const all = [...this.params.values()];
    return group ? all.filter((p) => p.group === group) : all;
  }

  count(group?: ParamGroup): number {
    return this.list(group).reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  }

  /** Current values as sources read chunk by chunk, sorted by name (for a checkpoint file). */
  tensorSources(): TensorSource[] {
    return byName([...this.params.values()].map((p) => deviceSource(p.name, p.shape, p.variable)));
  }

  /** Current values, sorted by name (for safetensors). */
  async toNamedArrays(): Promise<NamedArray[]> {
    const sorted = [...this.params.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return Promise.all(
      sorted.map(async (p) => ({ name: p.name, shape: p.shape, data: (await p.variable.data()) as Float32Array })),
    );
  }

  /** Overwrite one parameter's values (shape-checked). */
  assign(name: string, data: Float32Array, shape: number[]): void {
    const p = this.params.get(name);
    if (!p) throw new Error(`no parameter named ${name}`);
    if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
      throw new Error(`parameter ${name} has shape [${p.shape}] but the value has shape [${shape}]`);
    }
    tf.tidy(() => p.variable.assign(tf.tensor(data, p.shape, 'float32')));
    this.version += 1;
  }

  dispose(): void {
    for (const p of this.params.values()) p.variable.dispose();
    this.params.clear();
    this.byVariable.clear();
  }
}

function initialValues(rng: Rng, shape: number[], init: ParamInit): Float32Array {
  const n = shape.reduce((a, d) => a * d, 1);
  switch (init.kind) {
    case 'zeros':
      return new Float32Array(n);
    case 'ones':
      return new Float32Array(n).fill(1);
    case 'normal':
      return rng.fillNormal(new Float32Array(n), 0, init.std);
    case 'xavier': {
      const fanOut = shape.length >= 2 ? shape[shape.length - 2]! : n;
      const fanIn = shape[shape.length - 1]!;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      return rng.fillUniform(new Float32Array(n), -limit, limit);
    }
    case 'values': {
      if (init.data.length !== n)
        throw new Error(`initial values have ${init.data.length} elements, shape [${shape}] needs ${n}`);
      return Float32Array.from(init.data);
    }
  }
}
