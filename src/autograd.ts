// Tape-based reverse-mode autograd. Ops (src/ops.ts) call record() with their inputs, outputs and a
// backward function; backward() walks the tape in reverse creation order (a valid topological order),
// accumulating gradients, and releases every gradient temporary and saved tensor as soon as it is no
// longer needed, then clears the tape. Leaf tensors with requiresGrad accumulate into .grad (so
// micro-batches add up until zeroGrad).
//
// Ownership rule: a backward function returns tensors that autograd then owns exclusively: fresh ones, or
// (pass-through) one of its incoming gradients, which autograd then does not free with the node; never
// one tensor for two inputs. Everything is freed deterministically.
import { callOp } from './call_op';
import { GradNode, keep, setBackwardImpl, Tensor } from './tensor';

export interface Node extends GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  readonly outputs: readonly Tensor[];
  /** Tensors kept only for the backward (freed after it, or when the tape is cleared). */
  saved: Tensor[];
  backward(gradOutputs: (Tensor | null)[]): (Tensor | null)[];
}

let gradEnabled = true;
let tape: Node[] = [];

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording (inference, evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op with these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad);
}

/** Records an op whose outputs need gradients (call only when needsGrad(...inputs)). */
export function record(name: string, inputs: (Tensor | null)[], outputs: Tensor[], backward: Node['backward'], saved: Tensor[] = []): Node {
  const node: Node = { name, inputs, outputs, saved, backward };
  for (const o of outputs) {
    o.requiresGrad = true;
    o.gradFn = node;
  }
  tape.push(node);
  // A forward pass recorded but never back-propagated (e.g. evaluation without noGrad) leaves nodes
  // whose outputs a scope has since freed: drop those so the tape cannot grow without bound.
  if (tape.length > pruneAt) {
    tape = tape.filter((n) => n.outputs.some((o) => !o.disposed));
    pruneAt = Math.max(10_000, 2 * tape.length);
  }
  return node;
}
let pruneAt = 10_000;

/** Number of recorded ops not yet consumed by backward() (for tests and leak checks). */
export function tapeLength(): number {
  return tape.length;
}

/** out += g (elementwise), in place. */
function accumulate(out: Tensor, g: Tensor): void {
  if (out.size !== g.size) throw new RangeError(`autograd: gradient of size ${g.size} for a tensor of size ${out.size}`);
  callOp('axpby', out.device, [g, out], [out], [out.size], [1, 1]);
}

/**
 * Back-propagates from `root` (a scalar unless `gradient` is given) through everything recorded since
 * the last backward(), accumulating into the .grad of leaves that require grad. Clears the tape.
 */
export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) throw new TypeError('backward: the tensor does not require grad (no recorded op produced it from a parameter)');
  if (!gradient && root.size !== 1) throw new RangeError(`backward: root must be a scalar (got shape [${root.shape.join(', ')}]) unless a gradient is given`);
  const grads = new Map<Tensor, Tensor>();
  const seed = gradient
    ? gradient.to(root.device, root.dtype)
    : Tensor.fromArray(new Float32Array([1]), root.shape, { device: root.device, dtype: root.dtype });
  const nodes = tape;
  tape = [];
  try {
    if (root.gradFn === null) {
      addLeafGrad(root, seed);
      return;
    }
    grads.set(root, seed);
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i];
      const gOut = node.outputs.map((o) => grads.get(o) ?? null);
      if (gOut.every((g) => g === null)) continue;
      const gIn = node.backward(gOut);
      const passed = new Set(gIn.filter((g): g is Tensor => g !== null));
      if (passed.size !== gIn.filter((g) => g !== null).length) throw new Error(`autograd: the backward of ${node.name} returned one tensor for two inputs`);
      for (const o of node.outputs) {
        const g = grads.get(o);
        if (g && !passed.has(g)) g.dispose();
        grads.delete(o);
      }
      for (const t of node.saved) t.dispose();
      node.saved = [];
      node.inputs.forEach((inp, k) => {
        const g = gIn[k];
        if (!g) return;
        if (!inp || !inp.requiresGrad) {
          g.dispose();
          return;
        }
        if (inp.gradFn === null) {
          addLeafGrad(inp, g);
        } else {
          const prev = grads.get(inp);
          if (prev) {
            accumulate(prev, g);
            g.dispose();
          } else {
            grads.set(inp, g);
          }
        }
      });
    }
  } finally {
    for (const g of grads.values()) g.dispose();
    for (const n of nodes) {
      for (const t of n.saved) t.dispose();
      n.saved = [];
      for (const o of n.outputs) o.gradFn = null;
    }
  }
}

function addLeafGrad(leaf: Tensor, g: Tensor): void {
  if (g.size !== leaf.size || g.shape.length !== leaf.shape.length || g.shape.some((s, i) => s !== leaf.shape[i]))
    throw new Error(`autograd: gradient of shape [${g.shape.join(', ')}] for a leaf of shape [${leaf.shape.join(', ')}]`);
  if (leaf.grad) {
    accumulate(leaf.grad, g);
    g.dispose();
  } else {
    leaf.grad = keep(g);
  }
}

/** Drops everything recorded but not back-propagated (e.g. after a forward pass that is abandoned). */
export function clearTape(): void {
  for (const n of tape) {
    for (const t of n.saved) t.dispose();
    n.saved = [];
    for (const o of n.outputs) o.gradFn = null;
  }
  tape = [];
}

/** Frees the .grad of each tensor (they start from zero at the next backward). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}

setBackwardImpl(backward);
