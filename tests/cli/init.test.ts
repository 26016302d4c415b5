// `vwlmm init`: a randomly initialised checkpoint from a LLaVA-layout config.json and a tokenizer, the same weights as
// VwLmm.create with that seed, and one `vwlmm train --init` starts from; bad configs and folders fail clearly.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/data/tokenizer';
import { readSafetensors } from '../../src/io/safetensors';
import { configToJson } from '../../src/model/config';
import { VwLmm } from '../../src/model/vwlmm';
import { cli, tinyConfig, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('init');

describe('vwlmm init', () => {
  it('writes the weights VwLmm.create gives for the seed, which train --init starts from', () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 2 });
    const config = tinyConfig(new TextTokenizer(fx.tokenizer).vocabSize);
    const cfgFile = path.join(dir, 'config.json');
    fs.writeFileSync(cfgFile, JSON.stringify(configToJson(config)));
    const out = path.join(dir, 'fresh');
    const r = cli('init', '--config', cfgFile, '--tokenizer', fx.tokenizer, '--out', out, '--seed', '7');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^initialised [\d.]+M parameters \(seed 7, with vm_head\) into /);
    const m = VwLmm.create(config, 7);
    const saved = readSafetensors(path.join(out, 'model.safetensors'));
    for (const [name, p] of m.namedParameters()) expect(Array.from(saved.get(name)!.data), name).toEqual(Array.from(p.toArray()));
    m.dispose();
    const t = cli('train', '--init', out, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', path.join(dir, 'run'), '--steps', '1', '--batch-size', '2');
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/trained 1 step on/);

    const bad: [string[], RegExp][] = [
      [['init', '--config', cfgFile, '--tokenizer', fx.tokenizer, '--out', out], /--out .*fresh is not empty: init writes a new checkpoint and never replaces one/],
      [['init', '--config', path.join(dir, 'none.json'), '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'x')], /config .*none.json does not exist/],
    ];
    const broken = path.join(dir, 'broken.json');
    fs.writeFileSync(broken, JSON.stringify({ ...configToJson(config), image_size: 64 }));
    bad.push([['init', '--config', broken, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'y')], /broken.json: config: image_size 64 \(the preprocessing\) differs from vision_config.image_size 75/]);
    const small = path.join(dir, 'small.json');
    fs.writeFileSync(small, JSON.stringify({ ...configToJson(config), vocab_size: 5 }));
    bad.push([['init', '--config', small, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'z')], /tokenizer|vocab/i]);
    // sizes whose tensors cannot be allocated: the config's file and sizes named, not a bare RangeError
    const huge = path.join(dir, 'huge.json');
    fs.writeFileSync(huge, JSON.stringify({ ...configToJson(config), hidden_size: 1e6, intermediate_size: 1e6 }));
    bad.push([['init', '--config', huge, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'h')], /huge.json: the model it describes could not be made \(.*\): hidden_size 1000000, intermediate_size 1000000/]);
    // a tied head would be two weights here: refused, not written as tie_word_embeddings false
    const tied = path.join(dir, 'tied.json');
    fs.writeFileSync(tied, JSON.stringify({ ...configToJson(config), tie_word_embeddings: true }));
    bad.push([['init', '--config', tied, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 't')], /tied.json: tie_word_embeddings true is not supported for a new model/]);
    // options of an assembled model (--llm) are refused with --config, not dropped
    bad.push([['init', '--config', cfgFile, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'p'), '--projector', path.join(dir, 'none.bin'), '--template', 'mistral'], /--projector, --template are for --llm with --vision-tower: a --config model takes them from its config.json/]);
    bad.push([['init', '--config', cfgFile, '--tokenizer', fx.tokenizer, '--out', path.join(dir, 'p'), '--mm-projector-type', 'mlp2x_gelu'], /--mm-projector-type is for --llm with --vision-tower/]);
    for (const [args, msg] of bad) {
      const b = cli(...args);
      expect(b.status, args.join(' ')).toBe(2);
      expect(b.stderr, args.join(' ')).toMatch(msg);
      expect(b.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
