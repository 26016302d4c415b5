// The vwlmm half of scripts/check_lora_export.py: tiny_llama with a fresh LoRA adapter (B drawn non-zero, seeded),
// saved by saveLoraAdapter into <dir>/adapter, and its logits on tiny_llama's inputs in <dir>/ours.safetensors.
//   npx tsx scripts/export_lora_for_check.ts <dir>
import * as fs from 'fs';
import * as path from 'path';
import { Generator, nn, noGrad, scope, Tensor } from '../src';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors';
import { applyLora, loraParameters, saveLoraAdapter } from '../src/model/lora';

const dir = process.argv[2];
if (!dir) throw new Error('usage: npx tsx scripts/export_lora_for_check.ts <dir>');
const fx = path.join(__dirname, '..', 'tests', 'fixtures', 'tiny_llama');
const model = new nn.LlamaForCausalLM(nn.llamaConfigFromHF(JSON.parse(fs.readFileSync(path.join(fx, 'config.json'), 'utf8'))), { generator: new Generator(0) });
model.loadStateDict(readSafetensors(path.join(fx, 'model.safetensors')));
applyLora(model, { r: 6, alpha: 12, seed: 5 });
const gen = new Generator(6);
for (const [n, p] of loraParameters(model)) if (n.endsWith('lora_B.weight')) p.buffer.write(Float32Array.from(gen.normals(p.size), (v) => 0.2 * v));
saveLoraAdapter(path.join(dir, 'adapter'), model, { baseModelNameOrPath: 'tests/fixtures/tiny_llama' });
const io = readSafetensors(path.join(fx, 'io.safetensors'));
const ids = io.get('input_ids')!, am = io.get('attention_mask')!;
const logits = scope(() => noGrad(() => model.forward(Tensor.fromArray(ids.data, ids.shape), { keyMask: Tensor.fromArray(am.data, am.shape) }).logits.toArray() as Float32Array));
writeSafetensors(path.join(dir, 'ours.safetensors'), { logits: { dtype: 'float32', shape: [ids.shape[0], ids.shape[1], model.config.vocabSize], data: logits } });
console.log(`wrote ${dir}/adapter and ${dir}/ours.safetensors`);
