// Module: a tree of named parameters whose dotted names are the Hugging Face tensor names, so checkpoints
// map 1:1 (model.layers.0.self_attn.q_proj.weight ...). Parameters are Tensors with requiresGrad set;
// they are owned by the module (kept out of any scope) and freed by dispose().
import { f32ToBf16 } from '../bf16';
import { checkedOptions, rangeError, typeError } from '../errors';
import { Generator } from '../random';
import { Device, keep, Tensor } from '../tensor';

/** A host-side tensor (what checkpoint readers produce). */
export interface HostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface InitOptions {
  generator: Generator;
  device?: Device;
  /**
   * Leave the parameters uninitialised (for a model whose every weight is loaded next: loadCheckpoint). Drawing
   * 7B normals in JS takes minutes and leaves gigabytes of garbage for a result that is overwritten at once.
   */
  uninitialized?: boolean;
  /**
   * The storage of Linear weights: 'bfloat16' for Linear weights that will be frozen or only run (VwLmm.create's
   * and loadCheckpoint's option), so that a 7B model never exists in float32; a stage that trains one brings it
   * back to float32 (nn.storeFrozenWeights). Default float32.
   */
  linearDtype?: 'float32' | 'bfloat16';
}

/** Module.loadStateDict's options. */
export interface LoadStateDictOptions {
  /** Every parameter must be present and every entry used (default true). */
  strict?: boolean;
  /** Removed from the map's names first. */
  prefix?: string;
}
const LOAD_KEYS = { strict: true, prefix: true } satisfies Record<keyof LoadStateDictOptions, true>;

const registered = new WeakSet<Tensor>();

/** True for a tensor registered as a module parameter (mixed precision caches its bf16 copy, src/amp.ts). */
export function isParameter(t: Tensor): boolean {
  return registered.has(t);
}

export abstract class Module {
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownChildren = new Map<string, Module>();

  /** Registers a parameter (trainable by default; frozen when stored in bfloat16: see storeFrozenWeights). */
  protected param(name: string, t: Tensor): Tensor {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new Error(`Module: duplicate name '${name}'`);
    keep(t);
    t.requiresGrad = t.dtype !== 'bfloat16';
    registered.add(t);
    this.ownParams.set(name, t);
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new Error(`Module: duplicate name '${name}'`);
    this.ownChildren.set(name, m);
    return m;
  }

  /** Removes a child module (it is not disposed: the caller decides). */
  protected removeChild(name: string): void {
    if (!this.ownChildren.delete(name)) throw new Error(`Module: no child '${name}'`);
  }

  /** All parameters with their dotted names, in registration order. */
  namedParameters(prefix = ''): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [n, t] of this.ownParams) out.set(prefix + n, t);
    for (const [n, c] of this.ownChildren) for (const [k, t] of c.namedParameters(`${prefix}${n}.`)) out.set(k, t);
    return out;
  }

  /** This module ('' or `prefix` without its dot) and every descendant under its dotted name, depth first. */
  namedModules(prefix = ''): Map<string, Module> {
    const out = new Map<string, Module>([[prefix.replace(/\.$/, ''), this]]);
    for (const [n, c] of this.ownChildren) for (const [k, m] of c.namedModules(`${prefix}${n}.`)) out.set(k, m);
    return out;
  }

  parameters(): Tensor[] {
    return [...this.namedParameters().values()];
  }

  /** Parameters that currently require grad (the trainable set). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /** Freezes (false) or unfreezes (true) every parameter of this module. */
  setTrainable(trainable: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = trainable;
    return this;
  }

  /** The device of this module's parameters ('cpu' for a module without any). */
  get device(): Device {
    return this.firstParameter()?.device ?? 'cpu';
  }

  // Depth first, as namedParameters orders them, without building the map (device is read per forward).
  private firstParameter(): Tensor | undefined {
    for (const t of this.ownParams.values()) return t;
    for (const c of this.ownChildren.values()) {
      const t = c.firstParameter();
      if (t) return t;
    }
    return undefined;
  }

  numParameters(): number {
    return this.parameters().reduce((a, p) => a + p.size, 0);
  }

  /**
   * Copies weights from a name -> host tensor map. strict: every parameter must be present and every
   * entry used (prefix-stripped names: `prefix` is removed from the map's names first).
   */
  loadStateDict(weights: Map<string, HostTensor>, opts: LoadStateDictOptions = {}): { missing: string[]; unexpected: string[] } {
    opts = checkedOptions('loadStateDict', opts, LOAD_KEYS);
    const prefix = opts.prefix ?? '';
    const params = this.namedParameters();
    const used = new Set<string>();
    const missing: string[] = [];
    for (const [name, p] of params) {
      const src = weights.get(prefix + name);
      if (!src) {
        missing.push(name);
        continue;
      }
      used.add(prefix + name);
      writeParameter('loadStateDict', prefix + name, p, src);
    }
    const unexpected = [...weights.keys()].filter((k) => k.startsWith(prefix) && !used.has(k));
    if (opts.strict !== false && (missing.length || unexpected.length))
      throw new Error(`loadStateDict: ${missing.length ? `missing ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}` : ''}${missing.length && unexpected.length ? '; ' : ''}${unexpected.length ? `unexpected ${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ', ...' : ''}` : ''}`);
    return { missing, unexpected };
  }

  /** Host copies of every parameter under its dotted name. */
  stateDict(prefix = ''): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    for (const [n, p] of this.namedParameters(prefix)) out.set(n, { dtype: 'float32', shape: [...p.shape], data: p.toArray() as Float32Array });
    return out;
  }

  /** Frees every parameter (and its gradient). */
  dispose(): void {
    const owner = this.constructor.name;
    for (const [name, p] of this.namedParameters()) p.disposeWith(`has been disposed with its module: ${owner}.dispose() freed its parameter '${name}' (the module was used after its dispose())`);
  }
}

// `using m = ...` disposes m (its override of dispose, for a subclass) at the end of the block; left out on a runtime
// without Symbol.dispose (Node before 20.4) rather than installed under the key 'undefined'.
export interface Module extends Disposable {}
if (typeof Symbol.dispose === 'symbol') Module.prototype[Symbol.dispose] = function (this: Module): void { this.dispose(); };

/**
 * Copies a host tensor into parameter `p` (converted to its dtype: bfloat16 on CUDA); a wrong dtype or shape is
 * an error naming `name`. Shared by loadStateDict and the streaming checkpoint loader.
 */
export function writeParameter(where: string, name: string, p: Tensor, src: HostTensor): void {
  if (src.dtype !== 'float32') throw new TypeError(`${where}: ${name} is ${src.dtype}, expected float32`);
  const n = src.shape.reduce((a, b) => a * b, 1);
  if (n !== p.size || src.shape.length !== p.rank || src.shape.some((s, i) => s !== p.shape[i]))
    throw rangeError(where, `${name} has shape [${src.shape.join(', ')}] but the model expects [${p.shape.join(', ')}]`);
  const data = src.data as Float32Array;
  if (!(data instanceof Float32Array) || data.length !== n)
    throw rangeError(where, `${name} has shape [${src.shape.join(', ')}] (${n} values) but its data holds ${data?.length ?? 0}`);
  p.buffer.write(p.dtype === 'bfloat16' ? f32ToBf16(data) : data);
}

/** An ordered list of modules named "0", "1", ... (HF ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.child(String(i), m));
  }
}

// Parameter factories (initialisation as in Hugging Face for each family).
/** `init` as InitOptions, named when it is not (a Generator passed in its place failed deep inside as 'normals' of undefined). */
function checkInit(init: InitOptions): void {
  const expected = 'InitOptions { generator: Generator, device?, uninitialized?, ... }';
  if (init instanceof Generator) throw typeError('nn', 'init', `${expected} (pass { generator: it })`, init);
  if (init === null || typeof init !== 'object') throw typeError('nn', 'init', expected, init);
  if (!init.uninitialized && !(init.generator instanceof Generator)) throw typeError('nn', 'init.generator', 'a Generator (or uninitialized: true)', init.generator);
}

export function normalParam(shape: number[], std: number, init: InitOptions, mean = 0, dtype: 'float32' | 'bfloat16' = 'float32'): Tensor {
  checkInit(init);
  if (init.uninitialized) return Tensor.empty(shape, { device: init.device, dtype });
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(init.generator.normals(n, std, mean), shape, { device: init.device, dtype });
}

export function constParam(shape: number[], value: number, init: InitOptions): Tensor {
  checkInit(init);
  if (init.uninitialized) return Tensor.empty(shape, { device: init.device });
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(new Float32Array(n).fill(value), shape, { device: init.device });
}
