// The vwlmm half of scripts/check_llava_processor.py: a plain LLaVA (the demo's word-level tokenizer, a vocabulary
// padded past it) saved in the transformers layout twice, as LLaVA-1.5 pads images (aspect 'pad') and as CLIP crops
// them ('square'), into <dir>/pad and <dir>/square, and in LLaVA's own layout into <dir>/llava; beside them a 53 x 31
// picture (<dir>/image.png) and, in <dir>/ours.json, what vwlmm makes of it and of a prompt: the pixels preprocessClip
// gives, the image token's id and how many tokens an image takes, the prompt's token ids and the model's logits on
// them, the tokenizer's special ids and the prompt's ids as LLaVA's tokenizer_image_token gives them (image -200); and
// for every conversation template its chat_template.jinja with conversations and the prompts buildPrompt /
// buildGenerationPrompt write for them.
//   npx tsx scripts/export_llava_processor_for_check.ts <dir>
import * as fs from 'fs';
import * as path from 'path';
import { tokenizerImageToken } from '../src/data/conversation';
import { noGrad, scope } from '../src';
import { loadImage, preprocessClip } from '../src/data/images';
import { encodePng } from '../src/data/sort_of_clevr';
import { makeTokenizer } from '../src/demo/task';
import { saveCheckpoint } from '../src/model/checkpoint';
import { CLIP_MEAN, CLIP_STD, clipPreprocessOptions, numImageTokens, VwLmmConfig } from '../src/model/config';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { chatCases } from '../tests/support/chat_cases';

const dir = process.argv[2];
if (!dir) throw new Error('usage: npx tsx scripts/export_llava_processor_for_check.ts <dir>');
fs.mkdirSync(dir, { recursive: true });
const { tokenizer, json } = makeTokenizer();
const vocab = Math.ceil((tokenizer.vocabSize + 1) / 8) * 8;
const gen = new Generator(11);
const [w, h] = [53, 31];
const rgb = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(gen.uniform() * 256));
const picture = path.join(dir, 'image.png');
fs.writeFileSync(picture, encodePng(rgb, w, h));

void (async () => {
  const img = await loadImage(picture);
  const ours: Record<string, unknown> = { image: picture, prompt: 'USER: <image>\nwhat colour ASSISTANT:' };
  for (const aspect of ['pad', 'square'] as const) {
    const config = checkConfig(aspect, tokenizer.vocabSize);
    const model = VwLmm.create(config, 5);
    saveCheckpoint(path.join(dir, aspect), model, { format: 'transformers', tokenizer: json });
    const pixels = await preprocessClip(img, clipPreprocessOptions(config));
    // the prompt as vwlmm tokenises it (tokenizer_image_token), its image token expanded to the image's features, and
    // the logits of every position
    const ids = tokenizerImageToken(ours.prompt as string, tokenizer, { imageTokenIndex: config.imageTokenIndex }).flatMap((id) => (id === config.imageTokenIndex ? Array(numImageTokens(config)).fill(id) : [id]));
    const tokenIds = Int32Array.from(ids), T = ids.length;
    const batch = { B: 1, T, tokenIds, attentionMask: new Int32Array(T).fill(1), imagePositions: Int32Array.from([...ids.keys()].filter((i) => ids[i] === config.imageTokenIndex)), pixelValues: pixels };
    const logits = noGrad(() => scope(() => model.lm_head.forward(model.hidden(batch).h).toArray() as Float32Array));
    model.dispose();
    ours[aspect] = { pixels: Array.from(pixels), imageTokenIndex: config.imageTokenIndex, imageTokens: numImageTokens(config), size: config.image.size, inputIds: ids, logits: Array.from(logits) };
  }
  // the LLaVA layout's tokenizer, for LLaVA's own code (builder.py's AutoTokenizer, mm_utils' tokenizer_image_token)
  const llava = VwLmm.create(checkConfig('pad', -200), 5);
  saveCheckpoint(path.join(dir, 'llava'), llava, { tokenizer: json });
  llava.dispose();
  ours.special = { bos: tokenizer.bosId, eos: tokenizer.eosId, unk: tokenizer.unkId };
  ours.llavaIds = tokenizerImageToken(ours.prompt as string, tokenizer, { imageTokenIndex: -200 });
  ours.templates = chatCases();
  fs.writeFileSync(path.join(dir, 'ours.json'), JSON.stringify(ours));
  console.log(`wrote ${dir}/pad, ${dir}/square, ${dir}/llava, ${dir}/image.png and ${dir}/ours.json`);
})();

/** The checked model: a 1-layer LLaMA on a 2-layer CLIP tower, images of 28 pixels padded (LLaVA-1.5) or cropped. */
function checkConfig(aspect: 'pad' | 'square', imageTokenIndex: number): VwLmmConfig {
  return {
    llm: { vocabSize: vocab, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.1 },
    vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 2, numHeads: 2, imageSize: 28, patchSize: 7, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 0, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 28, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect }, imageTokenIndex,
  };
}
