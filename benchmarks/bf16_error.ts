// How far a bf16 forward (autocast) is from the float32 one, on the tiny LLaMA fixture (tests/fixtures/tiny_llama),
// without and with LoRA adapters (r 2, alpha 4, lora_B drawn at 0.1 so the adapters count): the normwise relative
// difference of the logits. Issue 11/12's record of what keeping the activations in bf16 costs in precision.
//   npx tsx benchmarks/bf16_error.ts
import * as fs from 'fs';
import * as path from 'path';
import { autocast, Generator, nn, noGrad, scope, Tensor } from '../src';
import { readSafetensors } from '../src/io/safetensors';
import { applyLora } from '../src/model/lora';

const fixture = path.join(__dirname, '..', 'tests', 'fixtures', 'tiny_llama');
const cfg = nn.llamaConfigFromHF(JSON.parse(fs.readFileSync(path.join(fixture, 'config.json'), 'utf8')));
const ids = readSafetensors(path.join(fixture, 'io.safetensors')).get('input_ids')!;
const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) (n += (a[i] - b[i]) ** 2), (d += b[i] ** 2);
  return Math.sqrt(n / d);
};
for (const lora of [false, true]) {
  const m = new nn.LlamaForCausalLM(cfg, { generator: new Generator(0) });
  m.loadStateDict(readSafetensors(path.join(fixture, 'model.safetensors')));
  if (lora) {
    applyLora(m, { r: 2, alpha: 4, seed: 1 });
    const g = new Generator(5);
    for (const [n, p] of m.namedParameters()) if (n.endsWith('lora_B.weight')) p.buffer.write(Float32Array.from(g.normals(p.size), (v) => 0.1 * v));
  }
  const logits = (dtype: 'float32' | 'bfloat16') =>
    scope(() => noGrad(() => autocast(dtype, () => Float32Array.from(m.forward(Tensor.fromArray(ids.data, ids.shape)).logits.toArray()))));
  console.log(JSON.stringify({ lora, logitsRelErr: relErr(logits('bfloat16'), logits('float32')) }));
  m.dispose();
}
