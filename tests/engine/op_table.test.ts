// The op table's arities (VW_OP(name, inputs, outputs, ints, floats) in native/core/ops.def) against the signature
// its header writes for each op, and the binding's refusal of a longer list than a row allows: an extra input to mul,
// an extra integer to softmax, once read as nothing, are TypeErrors naming the op. Runs on every backend.
import { describe, expect, it } from 'vitest';
import { callOp, Tensor } from '../../src/index';
import { backends, opsDef, OpArity } from '../support/backends';

/**
 * The header's signature of each op: the entries of its `in [...]`, `out [...]`, `i [...]`, `f [...]` lists (-1 for a
 * list of k, written `x_1..x_k`), a list it leaves out being empty; "same i" / "same i, f" takes them from the forward
 * op the backward belongs to.
 */
function headerArity(text: string, ops: string[]): Record<string, OpArity> {
  const lines = text.split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(2));
  const blocks = new Map<string, string>();
  let current: string | null = null;
  for (const l of lines) {
    const head = /^ (\w+) /.exec(l);
    if (head && ops.includes(head[1])) {
      current = head[1];
      blocks.set(current, l.slice(head[0].length));
    } else if (current && /^ {10,}/.test(l)) blocks.set(current, `${blocks.get(current)} ${l.trim()}`);
    else current = null;
  }
  const list = (block: string, key: string): string | null => {
    const m = new RegExp(`(?:^|\\s)${key} \\[`).exec(block);
    if (!m) return null;
    let depth = 1, k = m.index + m[0].length;
    const start = k;
    for (; k < block.length && depth > 0; k++) depth += block[k] === '[' ? 1 : block[k] === ']' ? -1 : 0;
    return block.slice(start, k - 1);
  };
  const count = (body: string | null): number => {
    if (body === null) return 0;
    let depth = 0, n = 1;
    for (const ch of body) {
      if (ch === '[') depth++;
      else if (ch === ']') depth--;
      else if (ch === ',' && depth === 0) n++;
    }
    return body.includes('..') ? -1 : n;
  };
  const out: Record<string, OpArity> = {};
  for (const op of ops) {
    const block = blocks.get(op);
    if (block === undefined) throw new Error(`ops.def: no signature line for ${op}`);
    const forward = op.endsWith('_backward') ? blocks.get(op.replace(/_backward$/, '_forward')) ?? blocks.get(op.replace(/_backward$/, '')) : undefined;
    const same = /\bsame i(, f)?\b/.exec(block);
    out[op] = {
      inputs: count(list(block, 'in')),
      outputs: count(list(block, 'out')),
      ints: count(same ? list(forward!, 'i') : list(block, 'i')),
      floats: count(same?.[1] ? list(forward!, 'f') : list(block, 'f')),
    };
  }
  return out;
}

describe('the op table', () => {
  const def = opsDef();

  it("gives each row the arity its header's signature writes", () => {
    expect(def.ops.length).toBeGreaterThan(30);
    expect(def.arity).toEqual(headerArity(def.text, def.ops));
  });

  // one per device (the dtype does not change a row's arity)
  for (const b of backends.filter((x) => x.dtype === 'float32')) {
    describe.skipIf(!b.available)(b.name, () => {
      it('refuses a call with more inputs, outputs, integers or floats than its row allows, naming the op', () => {
        const t = () => Tensor.zeros([4], { device: b.device });
        let refused = 0;
        for (const op of def.ops) {
          const a = def.arity[op];
          // the longest call a row allows, then each list one longer: refused before the op runs
          const full = { inputs: a.inputs, outputs: a.outputs, ints: a.ints, floats: a.floats };
          for (const key of ['inputs', 'outputs', 'ints', 'floats'] as const) {
            if (a[key] < 0) continue;
            const n = { ...full, [key]: full[key] + 1 };
            const tensors: Tensor[] = [];
            const make = (k: number) => Array.from({ length: Math.max(k, 0) }, () => (tensors.push(t()), tensors[tensors.length - 1]));
            const what = { inputs: 'inputs', outputs: 'outputs', ints: 'integer parameters', floats: 'float parameters' }[key];
            try {
              expect(() => callOp(op, b.device, make(n.inputs), make(n.outputs), new Array(Math.max(n.ints, 0)).fill(0), new Array(Math.max(n.floats, 0)).fill(0)), `${op} ${key}`)
                .toThrow(new RegExp(`^\\[${op}\\] takes at most ${a[key]} ${what} \\(native/core/ops\\.def\\), got ${a[key] + 1}$`));
            } finally {
              for (const x of tensors) x.dispose();
            }
            refused++;
          }
        }
        expect(refused).toBeGreaterThan(100);
      });
    });
  }
});
