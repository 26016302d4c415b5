// The vwlmm half of scripts/check_lora_export.py, for two bases:
// - tiny_llama with a fresh LoRA adapter (B drawn non-zero, seeded), saved by saveLoraAdapter into <dir>/adapter, and
//   its logits on tiny_llama's inputs in <dir>/ours.safetensors;
// - transformers' LlavaForConditionalGeneration tests/fixtures/tiny_llava/hf, loaded by loadCheckpoint, with adapters on
//   all seven Linear layers of its LLM and its projector moved (trained as LLaVA's recipe trains it), saved in the base's
//   layout (nonLoraTrainables: the projector as PEFT's modules_to_save) into <dir>/adapter_llava, its logits on
//   tiny_llava's inputs in <dir>/ours_llava.safetensors.
//   npx tsx scripts/export_lora_for_check.ts <dir>
import * as fs from 'fs';
import * as path from 'path';
import { Generator, nn, noGrad, scope, Tensor } from '../src';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors';
import { loadCheckpoint } from '../src/model/checkpoint';
import { applyLora, loraParameters, saveLoraAdapter } from '../src/model/lora';

const dir = process.argv[2];
if (!dir) throw new Error('usage: npx tsx scripts/export_lora_for_check.ts <dir>');
const fixtures = path.join(__dirname, '..', 'tests', 'fixtures');
const fx = path.join(fixtures, 'tiny_llama');
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

// transformers' LLaVA
const hf = path.join(fixtures, 'tiny_llava', 'hf');
const llava = loadCheckpoint(hf).model;
applyLora(llava, { r: 4, alpha: 8, seed: 7 });
for (const [n, p] of loraParameters(llava)) if (n.endsWith('lora_B.weight')) p.buffer.write(Float32Array.from(gen.normals(p.size), (v) => 0.2 * v));
for (const [n, p] of llava.namedParameters()) if (n.startsWith('model.mm_projector.')) p.buffer.write(Float32Array.from(p.toArray() as Float32Array, (v) => v + 0.05 * gen.normal()));
saveLoraAdapter(path.join(dir, 'adapter_llava'), llava, { baseModelNameOrPath: hf, nonLoraTrainables: ['model.mm_projector'] });
const lio = readSafetensors(path.join(fixtures, 'tiny_llava', 'io.safetensors'));
const lids = lio.get('input_ids')!, [B, T] = lids.shape;
const tokenIds = Int32Array.from(lids.data);
const imagePositions = Int32Array.from([...tokenIds.keys()].filter((i) => tokenIds[i] === 63));
const batch = { B, T, tokenIds, attentionMask: Int32Array.from(lio.get('attention_mask')!.data), imagePositions, pixelValues: Float32Array.from(lio.get('pixel_values')!.data) };
const llogits = noGrad(() => scope(() => llava.lm_head.forward(llava.hidden(batch).h).toArray() as Float32Array));
writeSafetensors(path.join(dir, 'ours_llava.safetensors'), { logits: { dtype: 'float32', shape: [B, T, llava.config.llm.vocabSize], data: llogits } });
console.log(`wrote ${dir}/adapter_llava and ${dir}/ours_llava.safetensors`);
