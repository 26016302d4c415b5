// Tape-based reverse-mode autograd. F.* (src/functional.ts) call record() with their inputs, outputs and a
// backward function; backward() walks the nodes its root depends on in reverse creation order (a valid topological
// order), accumulating gradients, and releases every gradient temporary and saved tensor as soon as it is no
// longer needed, then takes those nodes off the tape (a graph is back-propagated once, as torch's without
// retain_graph: a second backward through it is an error). What the root does not depend on stays for its own
// backward. Leaf tensors with requiresGrad accumulate into .grad (so micro-batches add up until zeroGrad).
//
// Ownership rule: a backward function returns tensors that autograd then owns exclusively: fresh ones, or
// (pass-through) one of its incoming gradients, which autograd then does not free with the node; never
// one tensor for two inputs. Everything is freed deterministically.
import { autocast, castTensor, computeDtype } from './amp';
import { callOp } from './call_op';
import type { Generator } from './random';
import { anyGraphHeld, disposeGraphHeld, GradNode, isGraphHeld, keep, scope, setBackwardImpl, setReadByGraph, Tensor, writeStamp } from './tensor';

export interface Node extends GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  readonly outputs: readonly Tensor[];
  /** Tensors kept only for the backward (freed after it, or when the tape is cleared). */
  saved: Tensor[];
  /** Leaves the backward gives gradients to besides its inputs (a gradientCheckpoint's parameters). */
  leaves?: readonly Tensor[];
  /** The order it was recorded in (record's count). */
  readonly seq: number;
  backward(gradOutputs: (Tensor | null)[]): (Tensor | null)[];
}

let gradEnabled = true;
let tape: Node[] = [];
/** Outputs of nodes a backward has consumed (their graph is freed): reaching one again is torch's second-backward error. */
const consumed = new WeakSet<Tensor>();
/** Set while gradientCheckpoint runs its first forward (without gradients) of a forward that will be trained. */
let checkpointForward = false;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * True while a forward runs that will be back-propagated: with gradients, or the no-gradient first forward of a
 * gradientCheckpoint. Training-only randomness (LoRA dropout) asks this, so a checkpointed layer draws its masks
 * in the forward and (replayed) in the recomputation.
 */
export function isTraining(): boolean {
  return gradEnabled || checkpointForward;
}

/**
 * Runs fn without recording (inference, evaluation, optimizer updates). fn must be synchronous: the flag is restored
 * when fn returns, so an async fn would record again after its first await (wrap each synchronous part instead).
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) {
      r.catch(() => {}); // refused, but still running: its later rejection must not go unhandled and end the process
      throw new TypeError('noGrad: fn must be synchronous (it returned a Promise); wrap each synchronous part instead');
    }
    return r;
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op with these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad);
}

/**
 * Records an op whose outputs need gradients (call only when needsGrad(...inputs)). `reads`: the inputs and outputs
 * whose values `backward` reads (GradNode.reads; default all), so that a scope can free the others' memory.
 */
export function record(name: string, inputs: (Tensor | null)[], outputs: Tensor[], backward: Node['backward'], saved: Tensor[] = [], reads?: (Tensor | null)[]): Node {
  const stamp = writeStamp(), seq = recorded++;
  const node: Node = reads ? { name, inputs, outputs, saved, backward, reads, stamp, seq } : { name, inputs, outputs, saved, backward, stamp, seq };
  for (const o of outputs) {
    o.requiresGrad = true;
    o.gradFn = node;
  }
  tape.push(node);
  // A forward pass recorded but never back-propagated (e.g. evaluation without noGrad) leaves nodes
  // whose outputs a scope has since freed: drop those. A node lives while a live output depends on it (its own, or one
  // downstream through released links, Tensor.release). An output left alive, neither disposed nor in a scope (torch's
  // habit of letting an evaluation's loss go out of scope), keeps its graph: JavaScript says nothing of what it
  // collects, so the tape cannot know it is gone. Past TAPE_WARN_NODES such nodes a warning names the cure.
  if (tape.length > pruneAt) {
    tape = dropDead(tape);
    pruneAt = Math.max(10_000, 2 * tape.length);
    if (tape.length >= TAPE_WARN_NODES && !tapeWarned) {
      tapeWarned = true;
      process.emitWarning(`the autograd tape holds ${tape.length} nodes of forwards never back-propagated whose outputs are still alive (not disposed, outside any scope), each keeping its graph's tensors: compute what needs no gradient under noGrad(), or inside scope(), or dispose the results; clearTape() frees the graphs`, 'VwlmmAutogradWarning');
    }
  }
  return node;
}
let pruneAt = 10_000;
/** Nodes kept after a prune past which record() warns, once a process (a training step's graph is a few thousand). */
const TAPE_WARN_NODES = 50_000;
let tapeWarned = false;
/** Nodes recorded so far: Node.seq, by which a checkpoint's recomputation finds its own nodes whatever a prune removed. */
let recorded = 0;

/** The nodes `from` leads back to (through their inputs' gradFn), `from` included. */
function ancestors(from: readonly GradNode[]): Set<GradNode> {
  const seen = new Set<GradNode>();
  const stack = [...from];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const t of n.inputs) if (t?.gradFn && !seen.has(t.gradFn)) stack.push(t.gradFn);
  }
  return seen;
}

/** Frees a node's saved tensors and detaches its outputs (the node leaves the graph). */
function release(n: Node): void {
  for (const t of n.saved) t.dispose();
  n.saved = [];
  for (const o of n.outputs) o.gradFn = null;
}

/**
 * The nodes that can still be back-propagated: a live output depends on them (their own, or one downstream through
 * released links, Tensor.release). The others are released, and the graph-held tensors only they refer to disposed.
 */
function dropDead(nodes: Node[]): Node[] {
  // a graph-held output (tensor.ts) keeps no node: only its graph's reads hold it
  const live = ancestors(nodes.filter((n) => n.outputs.some((o) => !o.disposed && !isGraphHeld(o))));
  const dead = nodes.filter((n) => !live.has(n));
  for (const n of dead) release(n);
  const kept = nodes.filter((n) => live.has(n));
  freeGraphHeld(dead, kept);
  return kept;
}

/**
 * The tensors a node refers to, and the tensors their views view: a graph-held one among them is still needed while
 * the node is on the tape or in a backward under way.
 */
function* nodeTensors(n: Node): IterableIterator<Tensor> {
  for (const list of [n.inputs, n.outputs, n.reads ?? [], n.saved]) for (let t of list) for (; t; t = t.base) yield t;
}

/**
 * Disposes the graph-held tensors (tensor.ts) of `released` nodes that none of `remaining`, nor a backward under way,
 * refers to.
 */
function freeGraphHeld(released: readonly Node[], remaining: readonly Node[]): void {
  if (!anyGraphHeld()) return; // a Trainer's step: its scopes own everything
  const candidates = new Set<Tensor>();
  for (const n of released) for (const t of nodeTensors(n)) if (isGraphHeld(t)) candidates.add(t);
  if (candidates.size === 0) return;
  for (const list of [remaining, ...inFlight]) for (const n of list) for (const t of nodeTensors(n)) candidates.delete(t);
  for (const t of candidates) disposeGraphHeld(t);
}

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
  if (gradient && (gradient.rank !== root.rank || gradient.shape.some((s, i) => s !== root.shape[i])))
    throw new RangeError(`backward: gradient has shape [${gradient.shape.join(', ')}] but the tensor has shape [${root.shape.join(', ')}]`);
  if (root.gradFn === null && consumed.has(root)) throw secondBackward('the tensor');
  const seed = gradient
    ? gradient.to(root.device, root.dtype)
    : Tensor.fromArray(new Float32Array([1]), root.shape, { device: root.device, dtype: root.dtype });
  propagate(root, seed);
}

let gradReadyHooks: ((leaf: Tensor) => void)[] = [];
let depth = 0;

/**
 * Calls fn(leaf) during each backward() as soon as a leaf's gradient is final: after the last node (in the
 * backward's order) that gives it one, whether or not a gradient reached it (then .grad may be null). What
 * data-parallel training starts its gradient reductions from (torch's post-accumulate-grad hooks). Returns the
 * function that removes the hook.
 */
export function onGradReady(fn: (leaf: Tensor) => void): () => void {
  gradReadyHooks = [...gradReadyHooks, fn];
  return () => {
    gradReadyHooks = gradReadyHooks.filter((h) => h !== fn);
  };
}

/** For each node index, the leaves it is the last to give a gradient to (the first node that uses them). */
function lastUses(nodes: readonly Node[]): Map<number, Tensor[]> {
  const seen = new Set<Tensor>(), at = new Map<number, Tensor[]>();
  nodes.forEach((node, i) => {
    for (const t of [...node.inputs, ...(node.leaves ?? [])]) {
      if (!t || !t.requiresGrad || t.gradFn !== null || seen.has(t)) continue;
      seen.add(t);
      const list = at.get(i);
      if (list) list.push(t);
      else at.set(i, [t]);
    }
  });
  return at;
}

function secondBackward(what: string): Error {
  return new Error(`backward: ${what} was computed by a graph that a backward has already been through and freed (torch: "Trying to backward through the graph a second time"; retain_graph is not supported): back-propagate the sum of the losses once, or compute it again`);
}

/**
 * The nodes of the backwards under way (a gradientCheckpoint's recomputation runs one inside another): what they have
 * yet to run may read a graph-held tensor that a nested backward, or the dead nodes dropped as one starts, also refers to.
 */
const inFlight: Node[][] = [];

/**
 * backward() from root with the gradient `seed`, which it takes ownership of. `recordedFrom`: a gradientCheckpoint's
 * recomputation, whose graph is the nodes recorded from that sequence number on (not other graphs still waiting).
 */
function propagate(root: Tensor, seed: Tensor, recordedFrom?: number): void {
  const grads = new Map<Tensor, Tensor>();
  let nodes: Node[];
  if (recordedFrom !== undefined) {
    // by sequence number, not index: a prune during the recomputation may have removed dead nodes before it
    nodes = tape.filter((n) => n.seq >= recordedFrom);
    tape = tape.filter((n) => n.seq < recordedFrom);
    inFlight.push(nodes);
  } else if (depth > 0) {
    // a backward called inside a recomputation: everything recorded since is its graph
    nodes = tape;
    tape = [];
    inFlight.push(nodes);
  } else {
    const mine = ancestors(root.gradFn ? [root.gradFn] : []);
    nodes = tape.filter((n) => mine.has(n));
    inFlight.push(nodes); // before dropDead: the dead nodes' graph-held tensors this backward reads stay
    tape = dropDead(tape.filter((n) => !mine.has(n)));
  }
  // hooks fire in the outermost backward only (a checkpoint's recomputation is part of its node)
  const hooks = depth === 0 ? gradReadyHooks : [];
  const ready = hooks.length ? lastUses(nodes) : null;
  depth++;
  try {
    if (root.gradFn === null) {
      addLeafGrad(root, seed);
      return;
    }
    grads.set(root, seed);
    for (let i = nodes.length - 1; i >= 0; i--) {
      backwardNode(nodes[i], grads);
      for (const leaf of ready?.get(i) ?? []) for (const h of hooks) h(leaf);
    }
  } finally {
    depth--;
    inFlight.pop();
    for (const g of grads.values()) g.dispose();
    for (const n of nodes) {
      for (const o of n.outputs) consumed.add(o);
      release(n);
    }
    freeGraphHeld(nodes, tape);
  }
}

/** One node of the backward: its output gradients in, its input gradients accumulated. */
function backwardNode(node: Node, grads: Map<Tensor, Tensor>): void {
  const gOut = node.outputs.map((o) => grads.get(o) ?? null);
  if (gOut.every((g) => g === null)) return;
  if (node.stamp !== undefined && node.stamp !== writeStamp()) checkUnwritten(node);
  // a tensor the backward reads, disposed by hand since: named here, not as an op's disposed input deep inside it
  for (const list of node.reads ? [node.reads] : [node.inputs, node.outputs]) for (const t of list) {
    if (t && t.isFreed()) throw new TypeError(`backward: the backward of ${node.name} reads a tensor (Tensor [${t.shape.join(', ')}] ${t.dtype}, ${node.inputs.includes(t) ? `its input ${node.inputs.indexOf(t)}` : node.outputs.includes(t) ? `its output ${node.outputs.indexOf(t)}` : 'one it reads besides its inputs and outputs, such as a key mask'}) that ${t.whyFreed()}: keep what a backward reads alive until it has run`);
  }
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
    let g = gIn[k];
    if (!g) return;
    if (!inp || !inp.requiresGrad) {
      g.dispose();
      return;
    }
    if (g.dtype !== inp.dtype) {
      // a gradient is held in its tensor's dtype (as torch's autograd casts it to the input's metadata), so the ops
      // and the accumulation downstream see one dtype (a bf16 activation's gradient is bf16)
      const c = castTensor(g, inp.dtype as 'float32' | 'bfloat16');
      g.dispose();
      g = c;
    }
    if (inp.gradFn === null) {
      if (consumed.has(inp)) {
        g.dispose();
        throw secondBackward(`an input of ${node.name}`);
      }
      // disposed, it lost its gradFn with its memory: taken for a leaf, the gradients behind it would be dropped
      if (inp.isFreed()) {
        g.dispose();
        throw new TypeError(`backward: an input of ${node.name} (Tensor [${inp.shape.join(', ')}] ${inp.dtype}) ${inp.whyFreed()}, and with it the graph behind it: its gradients cannot be computed (keep what a backward needs alive until it has run)`);
      }
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

/** torch's version check: a tensor the node's backward reads, written in place since it was recorded, is an error. */
function checkUnwritten(node: Node): void {
  const read = [...(node.reads ?? [...node.inputs, ...node.outputs]), ...node.saved];
  for (const t of read) {
    if (t && t.writtenAt > node.stamp!) {
      const k = node.inputs.indexOf(t);
      throw new Error(`backward: ${k >= 0 ? `input ${k}` : 'a tensor'} of ${node.name} (Tensor [${t.shape.join(', ')}] ${t.dtype}), which its backward reads, was written in place (F.writeAt, an optimizer step) after ${node.name} was recorded: its gradients would use the new values (torch: "one of the variables needed for gradient computation has been modified by an inplace operation")`);
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

/**
 * Gradient checkpointing (torch.utils.checkpoint, as LLaVA's --gradient_checkpointing uses it per layer): runs
 * fn(...inputs) keeping none of its intermediate tensors, and runs it again during the backward to get the
 * gradients of its inputs and of the parameters it uses. Memory held between forward and backward drops from
 * every intermediate of fn to its output; the price is a second forward of fn. fn must compute the same thing
 * both times (every op here is deterministic) and return a tensor it created (not a view of an input). Every tensor
 * fn reads must come in through `inputs` or `params` (a key mask too): one it only captures may be freed by a scope
 * before the backward recomputes fn (only the node's inputs and saved tensors are kept for it).
 * `params`: what fn uses besides its inputs that may need gradients (a module's parameters), so that a
 * layer whose input needs none (a first layer) still gets its parameters' gradients. `generators`: the random
 * streams fn draws from (a layer's LoRA dropout), replayed in the recomputation; fn's training-only randomness
 * runs in the first forward too (isTraining()), so both runs use the same masks.
 */
export function gradientCheckpoint(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], params: Iterable<Tensor>, generators: readonly Generator[] = []): Tensor {
  const grads = inputs.map((x) => x.requiresGrad);
  if (!gradEnabled || (!grads.some(Boolean) && ![...params].some((p) => p.requiresGrad))) return fn(...inputs);
  // The generators fn draws from (LoRA dropout) restart in the recomputation where the forward started, so it
  // draws the same masks (torch's preserve_rng_state); afterwards they continue where they were.
  const starts = generators.map((gen) => gen.saveState());
  const prevForward = checkpointForward;
  checkpointForward = true;
  let out: Tensor;
  try {
    out = scope(() => noGrad(() => fn(...inputs)));
  } finally {
    checkpointForward = prevForward;
  }
  if (!(out instanceof Tensor) || out.isView) throw new TypeError('gradientCheckpoint: fn must return a tensor it created (not a view or a non-tensor)');
  const dtype = computeDtype(); // the recomputation runs in the forward's precision (torch keeps the autocast state too)
  const node = record('gradientCheckpoint', inputs, [out], ([g]) => autocast(dtype, () => {
    // Leaves that share the inputs' memory collect the input gradients; the parameters' gradients
    // accumulate into their .grad as in any backward. The recomputed intermediates die with the scope.
    const leaves = inputs.map((x, k) => (grads[k] ? x.view(x.shape) : x));
    for (let k = 0; k < leaves.length; k++) if (grads[k]) leaves[k].requiresGrad = true;
    const now = generators.map((gen) => gen.saveState());
    generators.forEach((gen, k) => gen.restoreState(starts[k]));
    return scope(() => {
      let y: Tensor;
      const from = recorded; // the recomputation's nodes: those recorded from here on
      try {
        y = fn(...leaves);
      } finally {
        generators.forEach((gen, k) => gen.restoreState(now[k]));
      }
      if (y.requiresGrad) propagate(y, g!.moveTo(g!.shape), from); // g changes owner: the outer backward's dispose of it is a no-op
      return leaves.map((leaf, k) => {
        if (!grads[k]) return null;
        const lg = leaf.grad;
        leaf.grad = null;
        return lg;
      });
    });
  }), [], inputs); // reads its inputs (to recompute), not its output
  node.leaves = [...params];
  return out;
}

/** Drops everything recorded but not back-propagated (e.g. after a forward pass that is abandoned). */
export function clearTape(): void {
  const dropped = tape;
  for (const n of dropped) release(n);
  tape = [];
  freeGraphHeld(dropped, []);
}

/** Frees the .grad of each tensor (they start from zero at the next backward). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}

setBackwardImpl(backward);
setReadByGraph((t) => {
  for (const list of [tape, ...inFlight]) for (const n of list) for (const u of nodeTensors(n)) if (u === t) return true;
  return false;
});
