// Bytes a training forward leaves for its backward (memoryStats().cpu.liveBytes after model.loss, before backward)
// in a LoRA step of a small VW-LMM (6-layer LLM, d 32; six Sort-of-CLEVR questions, 708 tokens; autocast bf16), with
// gradient checkpointing on and off and either residual stream. Exact bytes (no size classes), so two builds can be
// compared to the byte; the loss is printed too (memory changes must leave it alone).
//   npx tsx benchmarks/held_after_forward.ts
import { autocast, memoryStats, scope } from '../src';
import { applyLora } from '../src/model/lora';
import { VwLmm } from '../src/model/vwlmm';
import { applyTrainable } from '../src/train/trainer';
import { tinyConfig, tinyData } from '../tests/train/support/tiny';

const { tokenizer, makeBatch } = tinyData(6);
const batch = makeBatch([0, 1, 2, 3, 4, 5]);
const c = tinyConfig(tokenizer.vocabSize);
const model = VwLmm.create({ ...c, llm: { ...c.llm, numLayers: 6, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 48 } }, 11);
applyLora(model, { r: 4, alpha: 8, seed: 1 });
applyTrainable(model, { projector: true, vmHead: true, lora: true });
for (const checkpointing of [true, false]) {
  for (const residualDtype of ['float32', 'bfloat16'] as const) {
    model.gradientCheckpointing = checkpointing;
    model.residualDtype = residualDtype;
    const before = memoryStats().cpu.liveBytes;
    let heldBytes = 0;
    const loss = scope(() => autocast('bfloat16', () => {
      const out = model.loss(batch);
      heldBytes = memoryStats().cpu.liveBytes - before;
      out.loss.backward();
      return out.loss.item();
    }));
    for (const p of model.parameters()) p.grad?.dispose(), (p.grad = null);
    console.log(JSON.stringify({ checkpointing, residualDtype, tokens: batch.B * batch.T, heldBytes, loss }));
  }
}
model.dispose();
