// Visual words as an inspection tool (VISUAL_WORDS.md section 4): the top-k tokens of
// softmax(vm_head(x_i)) for every patch i of an image, and a picture with the top-1 word drawn on each
// patch cell of the (upscaled) image.
import sharp from 'sharp';
import { fused } from '../fused';
import { noGrad } from '../autograd';
import { scope } from '../tensor';
import { TextTokenizer } from '../data/tokenizer';
import { VwLmm } from '../model/vwlmm';

export interface PatchWords {
  row: number;
  col: number;
  words: { token: string; id: number; prob: number }[];
}

/** Top-k visual words of every patch of one preprocessed image [3, S, S]. */
export function visualWordsOf(model: VwLmm, tokenizer: TextTokenizer, pixels: Float32Array, topK = 5): PatchWords[] {
  if (!model.vm_head) throw new Error('visual words need a vm_head: this checkpoint is a plain LLaVA model (vm_weight 0, no PIF)');
  const grid = model.config.vision.imageSize / model.config.vision.patchSize;
  if (model.config.selectFeature !== 'patch') throw new Error('visual words are drawn per patch: mm_vision_select_feature must be "patch"');
  return noGrad(() =>
    scope(() => {
      const x = model.imageFeatures(pixels, 1);
      const { ids, probs } = fused.visualWords(x, model.vm_head!.weight, { topK });
      const id = ids.toArray(), pr = probs.toArray();
      const out: PatchWords[] = [];
      for (let i = 0; i < x.shape[0]; i++) {
        const words = [];
        for (let j = 0; j < topK; j++) words.push({ id: id[i * topK + j], token: tokenizer.idToToken(id[i * topK + j]) ?? `<${id[i * topK + j]}>`, prob: pr[i * topK + j] });
        out.push({ row: Math.floor(i / grid), col: i % grid, words });
      }
      return out;
    }),
  );
}

const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);

/** PNG of the image (RGB, width x height) upscaled, with a grid and each patch's top-1 word. */
export async function drawVisualWords(rgb: Uint8Array, width: number, height: number, patches: PatchWords[], grid: number, file: string, scale = 8): Promise<void> {
  const W = width * scale, H = height * scale, cw = W / grid, ch = H / grid;
  const fontSize = Math.max(8, Math.min(cw / 4, ch / 3));
  const cells = patches.map((p) => {
    const x = p.col * cw, y = p.row * ch, w = p.words[0];
    return `<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="none" stroke="#000" stroke-opacity="0.35"/>` +
      `<text x="${x + cw / 2}" y="${y + ch / 2}" font-size="${fontSize}" font-family="DejaVu Sans, sans-serif" text-anchor="middle" dominant-baseline="middle" fill="#000" stroke="#fff" stroke-width="${fontSize / 6}" paint-order="stroke">${escapeXml(w.token)}</text>`;
  }).join('');
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${cells}</svg>`);
  await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } })
    .resize(W, H, { kernel: 'nearest' })
    .composite([{ input: svg, top: 0, left: 0 }])
    .png()
    .toFile(file);
}
