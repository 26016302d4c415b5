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
import { jinjaChatTemplate } from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';
import { CLIP_MEAN, CLIP_STD } from '../../src/model/config';
import { configFromTransformers, configToTransformers } from '../../src/model/transformers_llava';
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
    // with the BOS template vwlmm's word-level tokenizer does not state (the LLaVA layout's test below)
    expect(JSON.parse(tokenizerFiles(tokFile)['tokenizer.json'].toString()).post_processor).toMatchObject({ type: 'TemplateProcessing' });
    // an image token that is a word of the tokenizer is refused (every such word would be read as an image)
    expect(() => saveCheckpoint(path.join(tmp(), 'word'), model, { tokenizer: json, format: 'transformers', imageTokenIndex: tokenizer.eosId! }))
      .toThrow(`saveCheckpoint: imageTokenIndex ${tokenizer.eosId} is the tokenizer's token ${JSON.stringify(tokenizer.eosToken)}, not <image>`);
    model.dispose();
  });
});

describe("the processor files of a transformers-format save (AutoProcessor.from_pretrained, as llava-hf's)", () => {
  // scripts/check_llava_processor.py checked them against transformers 5.18: its processor's pixel_values equal
  // preprocessClip's bit for bit (pad and square), its prompts hold numImageTokens image tokens, and each template's
  // chat_template.jinja renders buildPrompt's / buildGenerationPrompt's prompts
  it('preprocessor_config.json, processor_config.json, chat_template.jinja, and <image> added to the tokenizer as the next id', () => {
    const { tokenizer, json } = tinyData(2);
    const config = { ...tinyConfig(tokenizer.vocabSize + 3), vmWeight: 0, imageTokenIndex: tokenizer.vocabSize };
    for (const aspect of ['pad', 'square'] as const) {
      const model = VwLmm.create({ ...config, image: { ...config.image, aspect }, template: aspect === 'pad' ? 'vicuna_v1' : 'mistral_instruct' }, 3);
      const dir = path.join(tmp(), aspect);
      saveCheckpoint(dir, model, { tokenizer: json, format: 'transformers' });
      const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      expect(read('preprocessor_config.json'), aspect).toEqual({
        image_processor_type: aspect === 'pad' ? 'LlavaImageProcessor' : 'CLIPImageProcessor', processor_class: 'LlavaProcessor',
        do_convert_rgb: true, ...(aspect === 'pad' ? { do_pad: true } : {}), do_resize: true, size: { shortest_edge: 75 }, resample: 3,
        do_center_crop: true, crop_size: { height: 75, width: 75 }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true,
        image_mean: [...CLIP_MEAN], image_std: [...CLIP_STD],
      });
      // LlavaProcessor's count: (75 / 15)^2 + 1, less the CLS for 'default'
      expect(read('processor_config.json')).toEqual({ processor_class: 'LlavaProcessor', image_token: '<image>', patch_size: 15, num_additional_image_tokens: 1, vision_feature_select_strategy: 'default' });
      expect(fs.readFileSync(path.join(dir, 'chat_template.jinja'), 'utf8')).toBe(jinjaChatTemplate(model.config.template));
      const written = new TextTokenizer(path.join(dir, 'tokenizer.json'));
      expect(written.tokenToId('<image>')).toBe(tokenizer.vocabSize);
      // vwlmm puts BOS in front (addsBos: a BOS and no post-processor); transformers' tokenizer does so by a template
      const post = read('tokenizer.json').post_processor;
      expect(post).toMatchObject({ type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>' } }, { Sequence: { id: 'A' } }], special_tokens: { '<s>': { ids: [tokenizer.bosId] } } });
      expect(written.addsBos).toBe(true);
      // batched generation as llava-hf's: a pad token (vwlmm's, the unk) and left padding (scripts/check_llava_processor.py
      // runs a padded batch)
      expect(read('tokenizer_config.json')).toEqual({ tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<unk>', padding_side: 'left' });
      expect(written.encode('a <image>\nb')).toEqual([...tokenizer.encode('a '), tokenizer.vocabSize, ...tokenizer.encode('\nb')]);
      // it loads back, and a save over it (chat_template.jinja is a checkpoint's file) with its own tokenizer is the same
      const back = loadCheckpoint(dir);
      expect(back.config.image.aspect).toBe(aspect);
      saveCheckpoint(dir, back.model, { tokenizer: path.join(dir, 'tokenizer.json'), format: 'transformers' });
      expect(new TextTokenizer(path.join(dir, 'tokenizer.json')).vocabSize).toBe(tokenizer.vocabSize + 1);
      back.model.dispose();
      model.dispose();
    }
    // an id transformers' tokenizers would not give it, and a tokenizer whose <image> is another id: refused, nothing written
    const model = VwLmm.create(config, 3);
    expect(() => saveCheckpoint(path.join(tmp(), 'gap'), model, { tokenizer: json, format: 'transformers', imageTokenIndex: tokenizer.vocabSize + 1 }))
      .toThrow(`saveCheckpoint: imageTokenIndex ${tokenizer.vocabSize + 1}: the tokenizer has no <image> token, and transformers' tokenizers give an added one the next free id, ${tokenizer.vocabSize}, not ${tokenizer.vocabSize + 1} (pass imageTokenIndex ${tokenizer.vocabSize})`);
    const withImage = { ...json, added_tokens: [...((json as { added_tokens?: unknown[] }).added_tokens ?? []), { id: tokenizer.vocabSize, content: '<image>', special: true }] };
    const other = path.join(tmp(), 'other');
    const misplaced = VwLmm.create({ ...config, imageTokenIndex: tokenizer.vocabSize + 1 }, 3);
    expect(() => saveCheckpoint(other, misplaced, { tokenizer: withImage, format: 'transformers' }))
      .toThrow(`saveCheckpoint: imageTokenIndex ${tokenizer.vocabSize + 1}, but the tokenizer's <image> is token ${tokenizer.vocabSize}`);
    misplaced.dispose();
    expect(fs.existsSync(other)).toBe(false);
    // the LLaVA layout has none of them
    const llava = path.join(tmp(), 'llava');
    saveCheckpoint(llava, model, { tokenizer: json });
    expect(fs.readdirSync(llava).filter((f) => /processor|chat_template/.test(f))).toEqual([]);
    // but its tokenizer.json says that BOS goes in front too (LLaVA's code loads it with AutoTokenizer), without <image>,
    // and a save from that file (a Trainer's next checkpoint) leaves it as it is
    const llavaTok = JSON.parse(fs.readFileSync(path.join(llava, 'tokenizer.json'), 'utf8'));
    expect(llavaTok.post_processor).toMatchObject({ type: 'TemplateProcessing', special_tokens: { '<s>': { ids: [tokenizer.bosId] } } });
    const read = new TextTokenizer(path.join(llava, 'tokenizer.json'));
    expect([read.addsBos, read.tokenToId('<image>'), read.vocabSize]).toEqual([true, null, tokenizer.vocabSize]);
    expect(read.encode('a b', { addBos: true })).toEqual(tokenizer.encode('a b', { addBos: true }));
    // and names its special tokens, as vwlmm infers them: without bos_token, LLaVA's tokenizer_image_token kept a BOS
    // after each image (scripts/check_llava_processor.py runs it)
    expect(JSON.parse(fs.readFileSync(path.join(llava, 'tokenizer_config.json'), 'utf8'))).toEqual({ tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' });
    const again = path.join(tmp(), 'again');
    saveCheckpoint(again, model, { tokenizer: path.join(llava, 'tokenizer.json') });
    expect(fs.readFileSync(path.join(again, 'tokenizer.json'), 'utf8')).toBe(fs.readFileSync(path.join(llava, 'tokenizer.json'), 'utf8'));
    model.dispose();
  });
});

describe('the special tokens a checkpoint states for transformers (withSpecialsStated)', () => {
  it('only those neither tokenizer_config.json nor special_tokens_map.json names, never the pad', () => {
    // a BPE file without unk, BOS or EOS: vwlmm pads with its first word ("a"), which transformers would make special
    // (and split "ab" around it): nothing is stated, and vwlmm reads the copy as the original
    const bare = tmp();
    fs.copyFileSync(path.join(__dirname, '..', 'fixtures', 'bpe', 'handmade', 'no_unk.json'), path.join(bare, 'tokenizer.json'));
    const files = tokenizerFiles(bare);
    expect(Object.keys(files).sort()).toEqual(['tokenizer.json']);
    // a config naming the unk, a map naming the eos: the bos is stated, in the config, and nothing else changes
    const { json } = tinyData(2);
    const part = tmp();
    fs.writeFileSync(path.join(part, 'tokenizer.json'), JSON.stringify(json));
    fs.writeFileSync(path.join(part, 'tokenizer_config.json'), JSON.stringify({ unk_token: '<unk>', model_max_length: 512 }));
    fs.writeFileSync(path.join(part, 'special_tokens_map.json'), JSON.stringify({ eos_token: '</s>' }));
    const stated = tokenizerFiles(part);
    expect(JSON.parse(stated['tokenizer_config.json'].toString())).toEqual({ unk_token: '<unk>', model_max_length: 512, bos_token: '<s>' });
    expect(stated['special_tokens_map.json'].toString()).toBe(JSON.stringify({ eos_token: '</s>' }));
    // stating is idempotent: the stated files state nothing more
    const again = tmp();
    for (const [name, data] of Object.entries(stated)) fs.writeFileSync(path.join(again, name), data);
    const twice = tokenizerFiles(again);
    for (const name of Object.keys(stated)) expect(twice[name].equals(stated[name]), name).toBe(true);
    for (const dir of [part, again]) {
      const t = new TextTokenizer(path.join(dir, 'tokenizer.json'));
      expect([t.bosId, t.eosId, t.unkId, t.padId, t.addsBos]).toEqual([1, 2, 0, 0, true]);
    }
  });
});

describe("what transformers' LLaVA config cannot say, kept as attributes", () => {
  it('the model max length and a Mistral base (no sliding window) come back from a transformers config', () => {
    const c = { ...tinyConfig(64, 0), imageTokenIndex: 63, modelMaxLength: 512 };
    expect(configFromTransformers(configToTransformers(c))).toEqual(c);
    const mistral = { ...c, base: 'mistral' as const, template: 'mistral' as const };
    const json = configToTransformers(mistral);
    expect(json).toMatchObject({ tokenizer_model_max_length: 512, llava_model_type: 'llava_mistral' });
    expect(configFromTransformers(json)).toEqual(mistral);
  });
});

