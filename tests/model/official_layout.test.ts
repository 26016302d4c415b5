// Checkpoints as the official VW-LMM code writes them: LLaVA-layout config.json without any vm_* key, the model
// class named by `architectures` (vwLlamaForCausalLM, vwPifLlamaForCausalLM, ...) and PIF by "pif" in the model's
// name. The vm_head is kept (it used to be dropped silently), PIF follows the official rule or an explicit override,
// and an unknown architecture is refused by name.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { F, Generator, nn, noGrad, scope, Tensor } from '../../src';
import { checkpointConfig, loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { applyLora } from '../../src/model/lora';
import { configFromJson, configToJson } from '../../src/model/config';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('official');

/** A checkpoint of a tiny model in the official layout: our save, then the vm_* keys removed and `architectures` set. */
function official(name: string, architectures: string[], vmWeight = 1): { dir: string; model: VwLmm } {
  const model = VwLmm.create(tinyConfig(40, vmWeight), 3);
  const dir = path.join(tmp(), name);
  saveCheckpoint(dir, model);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const k of ['vm_weight', 'vm_pif', 'vm_detach_target']) delete cfg[k];
  cfg.architectures = architectures;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return { dir, model };
}

describe('official VW-LMM checkpoints', () => {
  it('vm_head makes it a VW-LMM (weight 1), loaded with its weights; plain LLaVA stays plain', () => {
    const { dir, model } = official('VW-LMM-Vicuna-7b', ['vwLlamaForCausalLM']);
    const { model: m, config } = loadCheckpoint(dir);
    expect(config.vmWeight).toBe(1);
    expect(config.pif).toBe(false);
    expect(m.vm_head).not.toBeNull();
    expect(Array.from(m.vm_head!.weight.toArray())).toEqual(Array.from(model.vm_head!.weight.toArray()));
    m.dispose();
    model.dispose();
    const plain = official('llava-v1.5-7b-pif-like-name', ['LlavaLlamaForCausalLM'], 0);
    const p = loadCheckpoint(plain.dir);
    expect(p.config.vmWeight).toBe(0);
    expect(p.config.pif).toBe(false); // no vm_head: not a VW-LMM whatever its name
    expect(p.model.vm_head).toBeNull();
    expect(() => loadCheckpoint(plain.dir, { pif: true })).toThrow(/PIF variant \(pif: true\) but has no vm_head.weight/);
    p.model.dispose();
    plain.model.dispose();
  });

  it('PIF as the official builder decides it: the architecture, or "pif" (case-sensitive) in the folder name on a LLaMA base; with an override', () => {
    const byName = official('VW-LMM-Vicuna-pif-7b', ['vwLlamaForCausalLM']);
    const a = loadCheckpoint(byName.dir);
    expect(a.config.pif).toBe(true);
    const b = loadCheckpoint(byName.dir, { pif: false });
    expect(b.config.pif).toBe(false);
    const byArch = official('vw-model', ['vwPifLlamaForCausalLM']);
    const c = loadCheckpoint(byArch.dir);
    expect(c.config.pif).toBe(true);
    for (const x of [a, b, c]) x.model.dispose();
    byName.model.dispose();
    byArch.model.dispose();
  });

  it('checkpointConfig tells what loadCheckpoint loads (kind, LoRA entry, layout) without reading a weight', () => {
    const byName = official('VW-LMM-Vicuna-pif-7b', ['vwLlamaForCausalLM']);
    const loaded = [loadCheckpoint(byName.dir), loadCheckpoint(byName.dir, { pif: false })];
    // a corrupt weight byte, which a load's checksum finds, is never read
    const file = path.join(byName.dir, 'model.safetensors'), bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(file, bytes);
    expect(() => loadCheckpoint(byName.dir)).toThrow(/checksum/);
    expect(checkpointConfig(byName.dir)).toEqual({ config: loaded[0].config, lora: null, tokenizerPath: null, dir: byName.dir });
    expect(checkpointConfig(byName.dir, { pif: false }).config).toEqual(loaded[1].config);
    for (const x of [...loaded, byName]) x.model.dispose();
    // LoRA adapters as config.json states them; transformers' layout, which has no vm_head, is never PIF
    const model = VwLmm.create(tinyConfig(40, 0), 3);
    const dir = tmp();
    saveCheckpoint(path.join(dir, 'hf'), model, { format: 'transformers', imageTokenIndex: 39 });
    applyLora(model, { r: 2, alpha: 4, dropout: 0.05, targetModules: ['q_proj', 'v_proj'], seed: 1 });
    saveCheckpoint(path.join(dir, 'lora'), model);
    model.dispose();
    expect(checkpointConfig(path.join(dir, 'lora')).lora).toEqual({ r: 2, alpha: 4, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] });
    const hf = loadCheckpoint(path.join(dir, 'hf'));
    expect(checkpointConfig(path.join(dir, 'hf'))).toMatchObject({ config: hf.config, lora: null });
    hf.model.dispose();
    for (const f of [checkpointConfig, loadCheckpoint])
      expect(() => f(path.join(dir, 'hf'), { pif: true })).toThrow(`checkpoint: ${path.join(dir, 'hf')} is in transformers' LlavaForConditionalGeneration layout, which has no vm_head: it cannot be the PIF variant (pif: true)`);
    expect(() => checkpointConfig(path.join(dir, 'hf'), { pif: 1 } as never)).toThrow('checkpointConfig: expected a boolean for pif but received 1');
    expect(() => checkpointConfig(path.join(dir, 'nothing'))).toThrow(`checkpoint: ${path.join(dir, 'nothing')} is not a directory`);
  });

  it('the name is get_model_name_from_path\'s: the folder as given, <parent>_checkpoint-N for a checkpoint folder; never _name_or_path', () => {
    const cases: [string, string[], Record<string, unknown>, boolean][] = [
      // a saved config keeps the training-time base path in _name_or_path: the official loader never reads it
      ['VW-LMM-Vicuna-pif-7b', ['vwLlamaForCausalLM'], { _name_or_path: './checkpoints/vicuna-7b-v1.5' }, true],
      ['VW-LMM-Vicuna-7b', ['vwLlamaForCausalLM'], { _name_or_path: './checkpoints/vw-pif' }, false],
      // "pif" in Python is case-sensitive
      ['VW-LMM-Vicuna-PIF-7b', ['vwLlamaForCausalLM'], {}, false],
      // a Mistral base is vwMistralForCausalLM whatever its name
      ['VW-LMM-Mistral-pif-7b', ['vwMistralForCausalLM'], {}, false],
      ['vw-pif-stage2/checkpoint-1000', ['vwLlamaForCausalLM'], {}, true],
    ];
    for (const [name, arch, extra, pif] of cases) {
      const o = official(name, arch);
      const cfgFile = path.join(o.dir, 'config.json');
      fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), ...extra }));
      const l = loadCheckpoint(o.dir);
      expect([name, l.config.pif]).toEqual([name, pif]);
      // and with the path given with a trailing slash, as the official strip("/") takes it
      const t = loadCheckpoint(o.dir + '/');
      expect([name, t.config.pif]).toEqual([name, pif]);
      for (const m of [l.model, t.model, o.model]) m.dispose();
    }
  });

  it('a released VW-LMM-Mistral config (no conversation_template) gets the mistral template, and our saves name the official classes', () => {
    const m = official('VW-LMM-Mistral-7b', ['vwMistralForCausalLM']);
    const cfgFile = path.join(m.dir, 'config.json');
    const json = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    delete json.conversation_template;
    fs.writeFileSync(cfgFile, JSON.stringify(json));
    const l = loadCheckpoint(m.dir);
    expect(l.config.template).toBe('mistral');
    expect(l.config.base).toBe('mistral');
    // saved again, the class and the base survive
    const again = path.join(tmp(), 'again');
    saveCheckpoint(again, l.model);
    expect(JSON.parse(fs.readFileSync(path.join(again, 'config.json'), 'utf8')).architectures).toEqual(['vwMistralForCausalLM']);
    const l2 = loadCheckpoint(again);
    expect(l2.config.base).toBe('mistral');
    for (const x of [l.model, l2.model, m.model]) x.dispose();
    // a LLaMA base keeps vicuna_v1, and each kind is written as the official code names it
    const names: [number, boolean, string][] = [[1, false, 'vwLlamaForCausalLM'], [1, true, 'vwPifLlamaForCausalLM'], [0, false, 'LlavaLlamaForCausalLM']];
    for (const [vmWeight, pif, arch] of names) {
      const model = VwLmm.create({ ...tinyConfig(40, vmWeight), pif }, 3);
      const dir = path.join(tmp(), arch);
      saveCheckpoint(dir, model);
      const written = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(written.architectures).toEqual([arch]);
      const back = loadCheckpoint(dir);
      expect([back.config.pif, back.config.template]).toEqual([pif, 'vicuna_v1']);
      back.model.dispose();
      model.dispose();
    }
  });

  it('an unknown architecture is refused by name', () => {
    const { dir, model } = official('gpt', ['GPT2LMHeadModel']);
    expect(() => loadCheckpoint(dir)).toThrow(/config.json: architectures GPT2LMHeadModel not supported \(known: vwLlamaForCausalLM/);
    model.dispose();
  });

  it("Mistral bases: GQA, rope_theta 1e6, and a sliding window (exact up to its length, refused beyond); MistralConfig's defaults, not LLaMA's", () => {
    const hf = { vocab_size: 50, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 1e6, sliding_window: 8 };
    const cfg = nn.llamaConfigFromHF(hf, 'mistral');
    expect(cfg).toMatchObject({ numKvHeads: 2, ropeTheta: 1e6, slidingWindow: 8 });
    expect(nn.llamaConfigFromHF({ ...hf, sliding_window: null }, 'mistral').slidingWindow).toBeUndefined();
    // transformers' MistralConfig (5.18): use_sliding_window is not its key (Qwen2's), so the window stays; without
    // sliding_window the window is 4096, without num_key_value_heads 8 KV heads, without max_position_embeddings 131072
    expect(nn.llamaConfigFromHF({ ...hf, use_sliding_window: false }, 'mistral').slidingWindow).toBe(8);
    const { sliding_window: _w, num_key_value_heads: _kv, ...bare } = hf;
    expect(nn.llamaConfigFromHF({ ...bare, num_attention_heads: 16, hidden_size: 64 }, 'mistral')).toMatchObject({ slidingWindow: 4096, numKvHeads: 8, maxPositionEmbeddings: 131072 });
    // LLaMA has no window: the key does nothing there (transformers' LlamaConfig ignores it), and KV heads default to the heads
    expect(nn.llamaConfigFromHF(hf).slidingWindow).toBeUndefined();
    expect(nn.llamaConfigFromHF({ ...bare, num_attention_heads: 16, hidden_size: 64 })).toMatchObject({ numKvHeads: 16, maxPositionEmbeddings: 2048 });
    expect(() => nn.llamaConfigFromHF({ ...hf, sliding_window: '4096' }, 'mistral')).toThrow(/Mistral config: sliding_window must be a positive integer or null, got "4096"/);
    expect(nn.llamaConfigToHF(cfg, 'mistral').sliding_window).toBe(8);
    // no window is written as null: absent would read back as 4096
    expect(nn.llamaConfigToHF(nn.llamaConfigFromHF({ ...hf, sliding_window: null }, 'mistral'), 'mistral').sliding_window).toBeNull();
    expect('sliding_window' in nn.llamaConfigToHF(nn.llamaConfigFromHF(hf))).toBe(false);
    // through a LLaVA-layout config.json: the base decides (model_type llava_mistral, or a Mistral architecture)
    const mistralJson = configToJson({ ...tinyConfig(20), base: 'mistral', template: 'mistral' });
    expect(mistralJson.sliding_window).toBeNull();
    delete mistralJson.sliding_window;
    expect(configFromJson(mistralJson).llm.slidingWindow).toBe(4096);
    expect(configFromJson({ ...configToJson(tinyConfig(20)), sliding_window: 8 }).llm.slidingWindow).toBeUndefined();
    const model = new nn.LlamaForCausalLM(cfg, { generator: new Generator(1) });
    const run = (T: number) => scope(() => noGrad(() => F.sum(model.forward(Tensor.fromArray(new Int32Array(T).fill(3), [1, T])).logits).item()));
    expect(Number.isFinite(run(8))).toBe(true);
    expect(() => run(9)).toThrow(/9 positions exceed the config's sliding_window of 8: sliding-window attention is not implemented/);
    model.dispose();
  });
});

describe('generate on a Mistral base with a sliding window', () => {
  it('is refused before any work when the longest prompt and maxNewTokens reach past the window; up to it, it runs', () => {
    const config = { ...tinyConfig(20), base: 'mistral' as const, template: 'mistral' as const, llm: { ...tinyConfig(20).llm, slidingWindow: 12 } };
    const model = VwLmm.create(config, 3);
    const prompt = (n: number) => ({ tokenIds: new Int32Array(n).fill(5), imagePositions: new Int32Array(0), pixelValues: null });
    // 8 + 5 - 1 = 12 positions: the window exactly
    expect(model.generate([prompt(3), prompt(8)], { maxNewTokens: 5 }).map((o) => o.length)).toEqual([5, 5]);
    expect(() => model.generate([prompt(3), prompt(8)], { maxNewTokens: 6 })).toThrow("VwLmm.generate: prompt 1 (8 tokens) and maxNewTokens 6 reach 13 positions, past the Mistral base's sliding_window of 12: sliding-window attention is not implemented (up to 12 positions are exact); maxNewTokens 5 fits");
    expect(() => model.generate([prompt(13)], { maxNewTokens: 0 })).toThrow(/prompt 0 \(13 tokens\) and maxNewTokens 0 reach 13 positions, .*; the prompt alone is longer$/);
    model.dispose();
  });
});
