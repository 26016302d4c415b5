// `vwlmm generate` prompts as `vwlmm answer` does (LLaVA's eval loaders and run_llava: "<image>\n" + the question as
// it is, conv_plain's "<image>\nQ\n" with the plain template) and prints the answer stripped; --top-k; a prompt holding
// "<image>" is an error. `vwlmm visual-words` draws on the view the model saw and names a bad --out before any work.
import * as fs from 'fs';
import { spawnSync } from 'child_process';
import * as path from 'path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { cli, writeCliFixture } from '../train/support/tiny';

const tmp = tempDirs('cli-generate');

/** A copy of checkpoint `from` with config.json keys changed. */
function variant(from: string, to: string, keys: Record<string, unknown>): string {
  fs.cpSync(from, to, { recursive: true });
  const f = path.join(to, 'config.json');
  fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), ...keys }, null, 2));
  return to;
}

describe('vwlmm generate and visual-words', () => {
  let dir = '', fx: ReturnType<typeof writeCliFixture>, image = '';
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir);
    const images = path.join(fx.imageFolder, 'images');
    image = path.join('images', fs.readdirSync(images).find((f) => f.endsWith('.png'))!);
  }, 120_000);

  it("generate's prompt is answer's, with the plain template too, and its output is stripped as answer writes it", () => {
    const question = 'what shape is the red object ?  ';
    for (const template of ['plain', 'vicuna_v1']) {
      const ckpt = variant(fx.init, path.join(dir, template), { conversation_template: template });
      const questions = path.join(dir, `${template}.jsonl`), answers = path.join(dir, `${template}_answers.jsonl`);
      fs.writeFileSync(questions, JSON.stringify({ question_id: 1, image, text: question }) + '\n');
      const a = cli('answer', '--checkpoint', ckpt, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', answers, '--max-new-tokens', '6');
      expect(a.status, a.stderr).toBe(0);
      const answer = JSON.parse(fs.readFileSync(answers, 'utf8')).text as string;
      const g = cli('generate', '--checkpoint', ckpt, '--image', path.join(fx.imageFolder, image), '--prompt', question, '--max-new-tokens', '6');
      expect(g.status, g.stderr).toBe(0);
      expect(g.stdout, template).toBe(`${answer}\n`);
    }
  });

  it('--top-k: 1 samples the greedy answer; a prompt holding "<image>" is an error', () => {
    const args = ['generate', '--checkpoint', fx.init, '--image', path.join(fx.imageFolder, image), '--prompt', 'what color is the big object ?', '--max-new-tokens', '5'];
    const greedy = cli(...args);
    expect(greedy.status, greedy.stderr).toBe(0);
    const topK1 = cli(...args, '--temperature', '3', '--top-k', '1', '--seed', '4');
    expect(topK1.status, topK1.stderr).toBe(0);
    expect(topK1.stdout).toBe(greedy.stdout);
    expect(topK1.stderr).toBe('');
    // sampling settings of a greedy run are said to change nothing (transformers warns so when do_sample is off)
    const unused = cli(...args, '--top-p', '0.5', '--seed', '3');
    expect(unused.stdout).toBe(greedy.stdout);
    expect(unused.stderr).toBe('vwlmm: --top-p, --seed are for sampling (--temperature > 0); with --temperature 0 the answer is greedy and they change nothing\n');
    const badK = cli(...args, '--top-k', '-2');
    expect(badK.status).toBe(2);
    expect(badK.stderr).toMatch(/--top-k must be an integer >= 0/);
    const twice = cli('generate', '--checkpoint', fx.init, '--image', path.join(fx.imageFolder, image), '--prompt', '<image>\nwhat shape ?');
    expect(twice.status).toBe(2);
    expect(twice.stderr).toMatch(/--prompt holds "<image>": the prompt would hold 2 image placeholders for one image \(--image\)/);
    expect(twice.stderr).not.toMatch(/\n\s+at /);
  });

  it('--conv-mode overrides the checkpoint\'s template (an unknown one named); --pif / --no-pif override the official name rule', () => {
    const args = (ckpt: string, ...more: string[]) => ['generate', '--checkpoint', ckpt, '--image', path.join(fx.imageFolder, image), '--prompt', 'what shape ?', '--max-new-tokens', '4', ...more];
    const plainCkpt = variant(fx.init, path.join(dir, 'conv-plain'), { conversation_template: 'plain' });
    const viaFlag = cli(...args(fx.init, '--conv-mode', 'plain'));
    const viaConfig = cli(...args(plainCkpt));
    expect(viaFlag.status, viaFlag.stderr).toBe(0);
    expect(viaFlag.stdout).toBe(viaConfig.stdout);
    const bad = cli(...args(fx.init, '--conv-mode', 'llava_v9'));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/llava_v9/);
    // the official layout (no vm_* keys) in a folder whose name holds "pif": PIF unless --no-pif
    const cfg = JSON.parse(fs.readFileSync(path.join(fx.init, 'config.json'), 'utf8'));
    expect(cfg.vm_pif).toBe(false);
    const named = path.join(dir, 'tiny-pif');
    fs.cpSync(fx.init, named, { recursive: true });
    for (const k of ['vm_weight', 'vm_pif', 'vm_detach_target']) delete cfg[k];
    fs.writeFileSync(path.join(named, 'config.json'), JSON.stringify(cfg));
    const asPlain = cli(...args(named, '--no-pif'));
    const original = cli(...args(fx.init));
    expect(asPlain.status, asPlain.stderr).toBe(0);
    expect(asPlain.stdout).toBe(original.stdout);
    const asPif = cli(...args(named));
    const explicit = cli(...args(variant(fx.init, path.join(dir, 'explicit'), { vm_pif: true })));
    const forced = cli(...args(fx.init, '--pif'));
    expect(asPif.status, asPif.stderr).toBe(0);
    expect(asPif.stdout).toBe(explicit.stdout);
    expect(forced.stdout).toBe(explicit.stdout);
  });

  it('visual-words: the picture is the padded view of a non-square image; a bad --out is named before any work', async () => {
    const ckpt = variant(fx.init, path.join(dir, 'pad'), { image_aspect_ratio: 'pad' });
    const wide = path.join(dir, 'wide.png');
    await sharp(Buffer.alloc(90 * 60 * 3, 200), { raw: { width: 90, height: 60, channels: 3 } }).png().toFile(wide);
    const out = path.join(dir, 'words.webp');
    const v = cli('visual-words', '--checkpoint', ckpt, '--image', wide, '--out', out, '--top-k', '2');
    expect(v.status, v.stderr).toBe(0);
    const meta = await sharp(out).metadata();
    // the 75 x 75 square the model saw, upscaled 8x (the original 90 x 60 would be 720 x 480)
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 600, 600]);
    const j = JSON.parse(v.stdout);
    expect(j.patches[0].words[0]).toHaveProperty('token');
    expect(j.patches[0].words[0]).toHaveProperty('text');
    const gif = cli('visual-words', '--checkpoint', ckpt, '--image', wide, '--out', path.join(dir, 'w.gif'));
    expect(gif.status).toBe(2);
    expect(gif.stderr).toMatch(/--out .*w\.gif: unknown picture format '\.gif' \(give \.png, \.jpg, \.jpeg or \.webp\)/);
    // a folder that cannot be made (a file on the way), and more words than the vocabulary has, named by their options
    const under = path.join(out, 'w.png');
    const blocked = cli('visual-words', '--checkpoint', ckpt, '--image', wide, '--out', under);
    expect(blocked.status).toBe(2);
    expect(blocked.stderr).toBe(`vwlmm: --out ${under}: ${out} is a file, so nothing can be made under it\n`);
    const many = cli('visual-words', '--checkpoint', ckpt, '--image', wide, '--out', path.join(dir, 'made', 'w.png'), '--top-k', '100000');
    expect(many.status).toBe(2);
    expect(many.stderr).toMatch(/^vwlmm: --top-k 100000 exceeds the vocabulary's \d+ words\n$/);
  });

  it('visual-words: the JSON says the grid it is drawn on; every word (k = V) streamed; --no-picture; never over the image; a plain LLaVA refused before its load', () => {
    const V = JSON.parse(fs.readFileSync(path.join(fx.init, 'config.json'), 'utf8')).vocab_size as number;
    const img = path.join(fx.imageFolder, image);
    const all = cli('visual-words', '--checkpoint', fx.init, '--image', img, '--no-picture', '--top-k', String(V));
    expect(all.status, all.stderr).toBe(0);
    const j = JSON.parse(all.stdout);
    expect({ ...j, patches: j.patches.length }).toEqual({ image: img, picture: null, imageSize: 75, patchSize: 15, grid: 5, aspect: 'square', topK: V, patches: 25 });
    for (const p of j.patches) {
      expect(p.words).toHaveLength(V);
      expect(Math.abs(p.words.reduce((a: number, w: { prob: number }) => a + w.prob, 0) - 1)).toBeLessThan(1e-5);
    }
    expect(fs.existsSync('visual_words.png')).toBe(false); // (the CLI runs in the repository's root)
    // an output that cannot be written is an error, never a cut-off JSON and exit 0; a reader that left ends it quietly
    if (fs.existsSync('/dev/full')) {
      const full = fs.openSync('/dev/full', 'w');
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', '..', 'src', 'cli.ts'), 'visual-words', '--checkpoint', fx.init, '--image', img, '--no-picture'], { encoding: 'utf8', cwd: path.join(__dirname, '..', '..'), stdio: ['ignore', full, 'pipe'] });
      fs.closeSync(full);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^vwlmm: cannot write the output: ENOSPC: no space left on device/);
    }
    expect(cli('visual-words', '--checkpoint', fx.init, '--image', img, '--no-picture', '--out', path.join(dir, 'x.png')).stderr)
      .toBe('vwlmm: --out names the picture, which --no-picture leaves out: give one of them\n');
    // the image itself, or a hard link to it, is never the picture
    const copy = path.join(dir, 'self.png'), link = path.join(dir, 'self-link.png');
    fs.copyFileSync(img, copy);
    fs.linkSync(copy, link);
    const before = fs.readFileSync(copy);
    for (const out of [copy, link]) {
      const r = cli('visual-words', '--checkpoint', fx.init, '--image', copy, '--out', out);
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`vwlmm: --out ${out} is the --image ${copy}: the picture would replace the image; give another --out\n`);
    }
    expect(fs.readFileSync(copy).equals(before)).toBe(true);
    // several images: one load, a JSON line each in order, the pictures in the --out folder after their images' names
    const second = path.join(dir, 'second.png');
    fs.copyFileSync(img, second);
    const pics = path.join(dir, 'pics');
    const both = cli('visual-words', '--checkpoint', fx.init, '--image', img, second, '--out', pics, '--top-k', '3');
    expect(both.status, both.stderr).toBe(0);
    const lines = both.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.image, l.picture, l.patches.length])).toEqual([[img, path.join(pics, `${path.parse(img).name}.png`), 25], [second, path.join(pics, 'second.png'), 25]]);
    expect(lines[1].patches).toEqual(lines[0].patches); // the same pixels
    for (const l of lines) expect(fs.statSync(l.picture).size).toBeGreaterThan(100);
    expect(cli('visual-words', '--checkpoint', fx.init, '--image', img, second).stderr).toBe('vwlmm: --out: 2 images draw 2 pictures: give --out a folder to write them in (or --no-picture)\n');
    const same = path.join(dir, 'again');
    fs.mkdirSync(same);
    fs.copyFileSync(img, path.join(same, path.basename(img)));
    expect(cli('visual-words', '--checkpoint', fx.init, '--image', img, path.join(same, path.basename(img)), '--out', pics).stderr)
      .toBe(`vwlmm: --out: two images are named ${path.parse(img).name} (${img}, ${path.join(same, path.basename(img))}): their pictures would be one file; draw them in two calls\n`);
    const plain = variant(fx.init, path.join(dir, 'plain'), { vm_weight: 0 }); // (its vm_head.weight would be refused by the load)
    const r = cli('visual-words', '--checkpoint', plain, '--image', img, '--no-picture');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`vwlmm: visual words need a vm_head: ${plain} is a plain LLaVA model (no vm_head)\n`);
  });
});
