// The vwlmm half of scripts/check_llava_processor.py: a plain LLaVA (the demo's word-level tokenizer, a vocabulary
// padded past it) saved in the transformers layout twice, as LLaVA-1.5 pads images (aspect 'pad') and as CLIP crops
// them ('square'), into <dir>/pad and <dir>/square; beside them a 53 x 31 picture (<dir>/image.png) and, in
// <dir>/ours.json, what vwlmm makes of it and of a prompt: the pixels preprocessClip gives, the image token's id and how
// many tokens an image takes, the prompt's token ids and the model's logits on them; and for every conversation template its chat_template.jinja with conversations and the
// prompts buildPrompt / buildGenerationPrompt write for them.
//   npx tsx scripts/export_llava_processor_for_check.ts <dir>
import * as fs from 'fs';
import * as path from 'path';
import { buildGenerationPrompt, buildPrompt, getTemplate, jinjaChatTemplate, TEMPLATES, tokenizerImageToken, Turn } from '../src/data/conversation';
import { noGrad, scope } from '../src';
import { loadImage, preprocessClip } from '../src/data/images';
import { encodePng } from '../src/data/sort_of_clevr';
import { makeTokenizer } from '../src/demo/task';
import { saveCheckpoint } from '../src/model/checkpoint';
import { CLIP_MEAN, CLIP_STD, clipPreprocessOptions, numImageTokens, VwLmmConfig } from '../src/model/config';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';

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
    const config: VwLmmConfig = {
      llm: { vocabSize: vocab, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.1 },
      vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 2, numHeads: 2, imageSize: 28, patchSize: 7, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
      visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 0, pif: false, detachTarget: false,
      template: 'vicuna_v1', image: { size: 28, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect }, imageTokenIndex: tokenizer.vocabSize,
    };
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
  ours.templates = chatCases();
  fs.writeFileSync(path.join(dir, 'ours.json'), JSON.stringify(ours));
  console.log(`wrote ${dir}/pad, ${dir}/square, ${dir}/image.png and ${dir}/ours.json`);
})();

/** transformers' messages for our turns: a leading "<image>\n" as an image item, other turns as strings (or text items). */
function messagesOf(turns: Turn[], system?: string, list = false): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = system === undefined ? [] : [{ role: 'system', content: system }];
  for (const t of turns) {
    const role = t.from === 'human' ? 'user' : 'assistant';
    if (t.value.startsWith('<image>\n')) out.push({ role, content: [{ type: 'image' }, { type: 'text', text: t.value.slice('<image>\n'.length) }] });
    else out.push({ role, content: list ? [{ type: 'text', text: t.value }] : t.value });
  }
  return out;
}

/**
 * For every template, conversations with the prompt vwlmm writes for them (buildGenerationPrompt when the last turn is
 * the user's, else buildPrompt), or null where vwlmm refuses the conversation: the chat template must raise there.
 */
function chatCases(): Record<string, unknown>[] {
  const q = (value: string): Turn => ({ from: 'human', value }), a = (value: string): Turn => ({ from: 'gpt', value });
  const conversations: { turns: Turn[]; system?: string; list?: boolean }[] = [
    { turns: [q('<image>\nWhat colour is the circle?')] },
    { turns: [q('<image>\nWhat colour is the circle?'), a('Red.'), q('And the square?')] },
    { turns: [q('Where is <image> the square?')] },
    { turns: [q('Where is <image> the square?')], list: true },
    { turns: [q('<image>\nWhat colour is the circle?'), a('')] },
    { turns: [q('<image>\nHow many shapes?')], system: 'Answer in one word.' },
    { turns: [a('Hello.'), q('<image>\nWhat colour is the circle?')] }, // a leading reply: dropped
    { turns: [q('<image>\nWhat colour?'), q('And the square?')] }, // out of turn: refused
    { turns: [q('<image>\nA caption?'), a('red circle'), q('Another?'), a('blue square')] }, // plain: one round only
    { turns: [q('What colour is the circle?')] }, // plain: needs its image
  ];
  const out: Record<string, unknown>[] = [];
  for (const name of Object.keys(TEMPLATES)) {
    const t = getTemplate(name), cases: Record<string, unknown>[] = [];
    for (const c of conversations) {
      const messages = messagesOf(c.turns, c.system, c.list);
      const last = c.turns[c.turns.length - 1], generation = last.from === 'human';
      let expected: string | null;
      if (c.system !== undefined && t.style !== 'two' && t.style !== 'llama_2') expected = null; // no system prompt to replace
      else {
        const used = c.system === undefined ? t : { ...t, system: c.system };
        try {
          expected = generation ? buildGenerationPrompt(c.turns, used).prompt : buildPrompt(c.turns, { ...used, imageTag: false });
        } catch {
          expected = null;
        }
      }
      cases.push({ messages, generation, expected });
    }
    out.push({ name, jinja: jinjaChatTemplate(name), cases });
  }
  return out;
}
