// What transformers reads beside the weights of a saved checkpoint (a checkpoint trial with transformers 5.18): the
// config's float fields as floats (its strict LlavaConfig refused "initializer_factor": 1, and AutoTokenizer, which reads
// config.json first, failed with it), and generation_config.json with the tokenizer's special ids (without it, HF's
// generate ran past </s>), in both layouts.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint, tokenizerFiles } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig, tinyData } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('hf-side');

describe('the files transformers reads beside the weights', () => {
  it('config.json keeps float fields as floats and generation_config.json names bos / eos / pad, in both layouts', () => {
    const { tokenizer, json } = tinyData(2);
    // a padded vocabulary: its first row past the tokenizer's words is the <image> token's (as llava-hf's)
    const padded = [8, 16, 32, 64, 128].map((k) => Math.ceil(tokenizer.vocabSize / k) * k).find((n) => n > tokenizer.vocabSize)!;
    const config = tinyConfig(padded);
    config.vision = { ...config.vision, initializerFactor: 1, layerNormEps: 1e-5 };
    const model = VwLmm.create({ ...config, vmWeight: 0 }, 3);
    for (const format of ['vwlmm', 'transformers'] as const) {
      const dir = path.join(tmp(), format);
      saveCheckpoint(dir, model, { tokenizer: json, format, ...(format === 'transformers' ? { imageTokenIndex: tokenizer.vocabSize } : {}) });
      const text = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
      expect(text, format).toMatch(/"initializer_factor": 1\.0[,\n]/);
      expect(text, format).not.toMatch(/"(initializer_factor|initializer_range|layer_norm_eps|rms_norm_eps|rope_theta)": -?\d+[,\n]/);
      const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8'));
      expect(gen, format).toEqual({ _from_model_config: true, ...(tokenizer.bosId !== null ? { bos_token_id: tokenizer.bosId } : {}), eos_token_id: tokenizer.eosId, pad_token_id: tokenizer.padId });
      // and it loads back as it was saved
      const back = loadCheckpoint(dir);
      expect(back.config.vision.initializerFactor).toBe(1);
      back.model.dispose();
    }
    // a tokenizer path: the generation_config.json beside it as it is, else one of its ids; a Trainer's checkpoints too
    const tokDir = tmp(), tokFile = path.join(tokDir, 'tokenizer.json');
    fs.writeFileSync(tokFile, JSON.stringify(json));
    const fromPath = path.join(tmp(), 'p');
    saveCheckpoint(fromPath, model, { tokenizer: tokFile });
    expect(JSON.parse(fs.readFileSync(path.join(fromPath, 'generation_config.json'), 'utf8')).eos_token_id).toBe(tokenizer.eosId);
    fs.writeFileSync(path.join(tokDir, 'generation_config.json'), '{"eos_token_id": 2, "max_length": 4096}\n');
    const beside = path.join(tmp(), 'b');
    saveCheckpoint(beside, model, { tokenizer: tokFile });
    expect(fs.readFileSync(path.join(beside, 'generation_config.json'), 'utf8')).toBe('{"eos_token_id": 2, "max_length": 4096}\n');
    // what the Trainer copies into each of its checkpoints (checkpointFiles.tokenizer)
    expect(tokenizerFiles(tokFile)['generation_config.json'].toString()).toBe('{"eos_token_id": 2, "max_length": 4096}\n');
    // an image token that is a word of the tokenizer is refused (every such word would be read as an image)
    expect(() => saveCheckpoint(path.join(tmp(), 'word'), model, { tokenizer: json, format: 'transformers', imageTokenIndex: tokenizer.eosId! }))
      .toThrow(`saveCheckpoint: imageTokenIndex ${tokenizer.eosId} is the tokenizer's token ${JSON.stringify(tokenizer.eosToken)}, not <image>`);
    model.dispose();
  });
});
