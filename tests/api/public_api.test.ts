// The public API: what a user imports from the package root ('vwlmm') and its subpaths ('vwlmm/model',
// 'vwlmm/data', 'vwlmm/train', 'vwlmm/eval', 'vwlmm/demo'). Checks that every name a user needs is there and
// of the right kind, that the area modules and the root agree, that each area module exports what its source
// files offer (or the export is listed below as internal, with the reason), that the CLI reaches the library
// only through these modules, and that package.json's `exports` map points at the files tsc emits, which
// Node then loads by name from ES modules as well as CommonJS.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import * as api from '../../src';
// Named imports from the root: `npx tsc --noEmit` (npm test) checks they exist with these types.
import { VwLmm, loadCheckpoint, saveCheckpoint, Trainer, collate, TextTokenizer, evaluateFile, CLIP_MEAN } from '../../src';
import type { ConversationTemplateName, Stage, TemplateName, TrainerOptions, VwLmmConfig, EvalResult, PatchWords, Recipe, DemoResult } from '../../src';

const root = path.join(__dirname, '..', '..');
const src = path.join(root, 'src');
const tmp = tempDirs('api');
const AREAS = ['model', 'data', 'train', 'eval', 'demo', 'distributed'] as const;
type Area = (typeof AREAS)[number];

// Type-level checks (compile time): the root's TemplateName is the one name of the conversation templates, what a
// VwLmmConfig takes and what getTemplate knows (ConversationTemplateName, its older name, is the same type).
const templateOk: TemplateName = 'vicuna_v1';
// @ts-expect-error a name getTemplate does not know
const templateBad: TemplateName = 'vicuna_v2';
const conversationTemplate: ConversationTemplateName = 'v1';
const sameTemplateType: TemplateName = conversationTemplate;
type Uses = [Stage, TrainerOptions, VwLmmConfig, EvalResult, PatchWords, Recipe, DemoResult];
const typesSeen: Uses | null = null;

const CLASSES = [
  'VwLmm', 'Trainer', 'TextTokenizer', 'LlavaDataset', 'StopRequest', 'TrainingInterrupted', 'NonFiniteError', 'SafetensorsError',
  'Progress', 'Tensor', 'AdamW', 'Generator', 'ProcessGroup', 'Work', 'ZeroAdamW',
];
const FUNCTIONS = [
  // model
  'loadCheckpoint', 'saveCheckpoint', 'resolveCheckpointDir', 'checkTokenizerVocab', 'configFromJson', 'configToJson', 'validateConfig',
  'numImageTokens', 'hasVmHead', 'configFromTransformers', 'configToTransformers', 'isTransformersLlavaConfig', 'weightsFromTransformers',
  'weightsToTransformers', 'readSafetensors', 'writeSafetensors', 'readCheckpointWeights', 'readTorchBin', 'applyLora', 'loadLoraAdapter', 'saveLoraAdapter', 'mergeLora',
  // train
  'readTrainerState', 'trainOnFile', 'prepareFile', 'loadFileBatch', 'describeSkipped', 'installStopHandlers', 'exitCodeFor', 'cosineWithWarmup', 'plotMetrics', 'applyTrainable',
  // data
  'collate', 'nextTokenTargets', 'visualWordRows', 'tokenizeConversation', 'buildGenerationPrompt', 'buildPrompt', 'getTemplate',
  'tokenizerImageToken', 'readLlavaRecords', 'loadImage', 'decodeImage', 'preprocessClip', 'normalizeRgb', 'normalizeRgbInto', 'writeSortOfClevr',
  'generateScene', 'renderScene', 'questionsFor', 'captionFor', 'positionWords', 'sortOfClevrVocabulary', 'writeWordLevelTokenizer', 'wordLevelTokenizerJson', 'llamaTokenizerJson',
  // eval
  'normalizeAnswer', 'exactMatch', 'vqaSoftAccuracy', 'evaluateFile', 'scoreLlavaAnswers', 'visualWordsOf', 'drawVisualWords',
  'answerPrompt', 'mmbenchQuestions', 'mmbenchSubmission', 'readXlsx', 'writeXlsx',
  'scoreGQA', 'gqaPrediction', 'scoreMME', 'convertAnswersToMME',
  // demo
  'runDemo', 'runRecipe', 'recipeConfig',
  // distributed
  'initProcessGroup', 'processGroup', 'launchEnv', 'rankThreads', 'launchRanks', 'freePort', 'rendezvous', 'onGradReady',
  // engine
  'scope', 'keep', 'backward', 'noGrad', 'zeroGrad', 'clipGradNorm', 'gradNorm', 'callOp', 'opNames', 'opConstants', 'backendInfo', 'memoryStats',
  'cudaAvailable', 'releaseHostCache', 'cachedHostBytes', 'hostSyncs', 'synchronize', 'setAsync', 'isAsync',
];
const OBJECTS = ['fused', 'F', 'DEFAULT_WORKSPACE_BUDGET', 'nn', 'DEFAULT_RECIPE', 'TEMPLATES', 'VICUNA_V1', 'WORD_LEVEL_TOKENIZER_CONFIG', 'MME_SUBTASKS'];
const ARRAYS = ['CLIP_MEAN', 'CLIP_STD', 'COLOURS', 'LLAVA_TRANSFORMERS_NAMES', 'STOP_SIGNALS'];

const isClass = (v: unknown) => typeof v === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(v));

/** The source files behind each area module; every runtime export of theirs is public unless listed in INTERNAL. */
const SOURCES: Record<Area, string[]> = {
  model: ['model/vwlmm', 'model/config', 'model/checkpoint', 'model/transformers_llava', 'model/lora', 'io/safetensors', 'io/torch_bin'],
  data: ['data/tokenizer', 'data/conversation', 'data/dataset', 'data/images', 'data/collate', 'data/sort_of_clevr', 'data/word_level_tokenizer', 'data/sentencepiece'],
  train: ['train/trainer', 'train/from_file', 'train/interrupt', 'train/schedule', 'train/progress', 'train/sampler', 'train/tensorboard', 'viz/plot'],
  eval: ['eval/llava_eval', 'eval/visual_words', 'eval/gqa', 'eval/mme'],
  demo: ['demo/demo', 'demo/recipe'],
  distributed: ['distributed/process_group', 'distributed/zero', 'distributed/env', 'distributed/launch', 'distributed/rendezvous'],
};
const INTERNAL: Record<string, string> = {
  'train/replay:StageReplay': "the Trainer's op-program bookkeeping for a stage (TrainerOptions.replay is the public switch)",
  'train/tensorboard:crc32c': "TFRecord framing of TensorBoardWriter (tested directly against TensorBoard's writer)",
  'train/tensorboard:tfRecord': "TFRecord framing of TensorBoardWriter (tested directly against TensorBoard's writer)",
  'train/tensorboard:encodeEvent': "TensorBoardWriter's Event protobuf (tested directly against TensorBoard's writer)",
  'model/vwlmm:spliceIndexOf': "VwLmm's splice index of a batch, memoized so that replayed steps take it as one of the batch's arrays (modelBatchArrays)",
  'model/vwlmm:klRowsOf': "VwLmm's KL rows of a batch (the given ones, or the method's memoized), which replayed steps take as batch arrays",
  'model/transformers_llava:stringifyTransformersConfig': "saveCheckpoint's JSON layout (matches Python's json.dumps)",
  'model/config:selectLayerFits': "validateConfig's range of mm_vision_select_layer, which assembleLlava checks first to name the caller's setting",
  'io/safetensors:checkExpectedShape': "the expected-shape check shared with the PyTorch checkpoint reader (io/torch_bin.ts)",
  'io/safetensors:openRegularFile': "the regular-file open (no FIFO, no device) shared with io/torch_bin.ts and checkpoint.ts",
  'model/checkpoint:withModelNames': "the Trainer's resume reads a checkpoint's tensors by the names loadCheckpoint maps them to",
  'model/checkpoint:tokenizerFiles': 'what saveCheckpoint copies for a tokenizer path, read by the Trainer when it starts',
  'model/checkpoint:isPlainFileName': "saveCheckpoint's and the Trainer's check of an extra checkpoint file's name",
  'model/checkpoint:TOKENIZER_FILE_NAMES': 'the files tokenizerFiles brings into a checkpoint, which the Trainer refuses as extra files',
  'model/lora:loraTrainingRecord': "the Trainer's record of the adapters and trainable parameters in trainer_state.json",
  'model/lora:resumeLoraTraining': "the Trainer's resume check and dropout-stream restore",
  'io/safetensors:CHECKSUM_KEY': 'metadata key written and verified by the safetensors reader/writer itself',
  'io/safetensors:readRegularFileSync': 'fs.readFileSync for the files users name (no FIFO, no device), shared by the readers of data, tokenizers, questions and configs',
  'io/safetensors:readRegularFile': "openRegularFile's whole-file read, shared with checkpoint.ts's config and index readers",
  'io/safetensors:kindOf': "what a non-regular file is, shared with the image reader (data/images.ts)",
  'io/safetensors:describeFsError': "file-error wording shared with checkpoint.ts's directory reader",
  'io/safetensors:isPlainObject': "JSON shape check shared with checkpoint.ts's shard-index reader",
  'io/safetensors:hostTensorFromBytes': "the dtype conversion shared with the PyTorch checkpoint reader (io/torch_bin.ts)",
  'io/torch_bin:unpickle': 'the restricted pickle machine behind readTorchBin (tested directly)',
  'data/images:checkClipOptions': "preprocessClip's option check, shared with ClipImageWorkers (which checks them when made)",
  'data/sort_of_clevr:SHORT_ANSWER_PROMPT': "a source text of the vocabulary; the data module's SHORT_ANSWER_PROMPT is conversation.ts's",
  'data/sort_of_clevr:VICUNA_SYSTEM_PROMPT': 'a source text of the vocabulary',
  'data/sort_of_clevr:OBJECT_SIZE': 'renderer geometry',
  'data/sort_of_clevr:MIN_CENTRE_DISTANCE': 'scene generator geometry',
  'data/sort_of_clevr:shapeContains': 'renderer geometry',
  'distributed/process_group:allGatherInt32': "host int32 arrays through one all-gather, shared by allGatherObject and checkRanksAgree",
  'distributed/launch:mpirunArgs': "launchRanks's mpirun command line",
  'distributed/rendezvous:ncclRendezvous': "initProcessGroup's NCCL start (the addon's unique id through rendezvous)",
  'distributed/rendezvous:ncclDeviceIndex': "ncclRendezvous's choice of the rank's GPU (exported for its unit test)",
};
/** Exported under another name by the area module (generic names given the data set's). */
const RENAMED: Record<string, string> = { 'data/sort_of_clevr:IMAGE_SIZE': 'SORT_OF_CLEVR_IMAGE_SIZE' };

// through vitest's module graph, so the bindings are the very objects the root re-exports
const load = async (rel: string): Promise<Record<string, unknown>> => (await import(path.join(src, rel))) as Record<string, unknown>;
const root_ = api as unknown as Record<string, unknown>;

describe('public API from the package root', () => {
  it('has every name a user needs, of the right kind', () => {
    const wrong: string[] = [];
    for (const n of CLASSES) if (!isClass(root_[n])) wrong.push(`${n}: expected a class, got ${typeof root_[n]}`);
    for (const n of FUNCTIONS) if (typeof root_[n] !== 'function' || isClass(root_[n])) wrong.push(`${n}: expected a function, got ${isClass(root_[n]) ? 'a class' : typeof root_[n]}`);
    for (const n of OBJECTS) if (typeof root_[n] !== 'object' || root_[n] === null || Array.isArray(root_[n])) wrong.push(`${n}: expected an object`);
    for (const n of ARRAYS) if (!Array.isArray(root_[n])) wrong.push(`${n}: expected an array`);
    expect(wrong).toEqual([]);
    expect(typeof (api.nn as Record<string, unknown>).LlamaForCausalLM).toBe('function');
    expect(typeof api.F.visualWordKL).toBe('function');
    // the named imports above are the same bindings
    expect([VwLmm, loadCheckpoint, saveCheckpoint, Trainer, collate, TextTokenizer, evaluateFile]).toEqual([api.VwLmm, api.loadCheckpoint, api.saveCheckpoint, api.Trainer, api.collate, api.TextTokenizer, api.evaluateFile]);
    expect([templateOk, templateBad, conversationTemplate, sameTemplateType, typesSeen]).toEqual(['vicuna_v1', 'vicuna_v2', 'v1', 'v1', null]);
  });

  it('re-exports every area module, the same bindings (names two areas share resolved to the model\'s)', async () => {
    for (const area of AREAS) {
      const mod = await load(area);
      expect(Object.keys(mod).length, area).toBeGreaterThan(3);
      for (const [k, v] of Object.entries(mod)) {
        if (area === 'data' && (k === 'CLIP_MEAN' || k === 'CLIP_STD')) {
          expect(root_[k], k).toBe((await load('model'))[k]); // the model's mutable tuple, as ImageConfig holds it
          expect(root_[k], k).toEqual(v); // and the same numbers
        } else {
          expect(root_[k], `${area}.${k}`).toBe(v);
        }
      }
    }
    expect(CLIP_MEAN).toBe((await load('model/config')).CLIP_MEAN);
  });

  it("each area module exports its source files' runtime exports, except those listed as internal", async () => {
    const unlisted: string[] = [];
    for (const area of AREAS) {
      const mod = await load(area);
      for (const file of SOURCES[area]) {
        for (const [k, v] of Object.entries(await load(file))) {
          const id = `${file}:${k}`;
          if (id in INTERNAL) {
            expect(mod[k], `${id} is listed as internal but exported`).not.toBe(v); // the name may hold another module's value
            continue;
          }
          const as = RENAMED[id] ?? k;
          if (mod[as] !== v) unlisted.push(`${id} is not exported by src/${area}/index.ts${as !== k ? ` as ${as}` : ''} (export it, or list it in INTERNAL with the reason)`);
        }
      }
    }
    expect(unlisted).toEqual([]);
  });
});

/** Module specifiers of a source text: static imports and re-exports, import(...) and require(...). */
function moduleSpecifiers(file: string, text: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) out.push(n.moduleSpecifier.text);
    if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) out.push(n.moduleReference.expression.text);
    if (ts.isCallExpression(n) && (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === 'require'))) {
      const a = n.arguments[0];
      out.push(a && ts.isStringLiteralLike(a) ? a.text : `<computed: ${a?.getText(sf)}>`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

describe('the CLI uses the public modules only', () => {
  const ALLOWED_LOCAL = new Set(['./index', ...AREAS.map((a) => `./${a}`), '../package.json']);
  const check = (file: string, text: string) => moduleSpecifiers(file, text).filter((s) => (s.startsWith('.') || s.startsWith('<computed')) && !ALLOWED_LOCAL.has(s));

  it('src/cli.ts imports nothing but ./index and the area modules (and ../package.json)', () => {
    const file = path.join(src, 'cli.ts');
    const specs = moduleSpecifiers(file, fs.readFileSync(file, 'utf8'));
    expect(specs.filter((s) => s.startsWith('.'))).toEqual(expect.arrayContaining(['./index', './model', './data', './train', './eval', './demo']));
    expect(check(file, fs.readFileSync(file, 'utf8'))).toEqual([]);
  });

  it('the check sees every form of import (so it cannot pass by missing one)', () => {
    const bad = [
      "import { a } from './data/tokenizer';", "export * from './model/config';", "const m = await import('./train/trainer');",
      "const p = require('./viz/plot');", "import x = require('./eval/llava_eval');", "const d = await import(`./demo/${name}`);",
    ];
    for (const line of bad) expect(check('x.ts', line), line).toHaveLength(1);
    expect(check('x.ts', "import { Command } from 'commander';\nconst { VwLmm } = await import('./model');\nrequire('../package.json');")).toEqual([]);
  });
});

describe("package.json's exports map", () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    main: string; types: string; bin: Record<string, string>; exports: Record<string, string | Record<string, string>>; typesVersions?: Record<string, Record<string, string[]>>;
  };
  const build = ts.readConfigFile(path.join(root, 'tsconfig.build.json'), ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(build.config, ts.sys, root);
  const outDir = parsed.options.outDir!, rootDir = parsed.options.rootDir!;
  /** The source file tsc compiles to a path of the package (dist/x.js or dist/x.d.ts -> src/x.ts). */
  const sourceOf = (p: string): string => {
    const abs = path.resolve(root, p);
    const rel = path.relative(outDir, abs);
    if (rel.startsWith('..')) throw new Error(`${p} is not under tsc's outDir ${path.relative(root, outDir)}`);
    return path.join(rootDir, rel.replace(/\.d\.ts$|\.js$/, '.ts'));
  };
  const subpaths = ['.', ...AREAS.map((a) => `./${a}`)];

  it('has the root, one subpath per area and ./package.json, each pointing at what tsc emits from src/<area>/index.ts', () => {
    expect(Object.keys(pkg.exports).sort()).toEqual([...subpaths, './package.json'].sort());
    expect(pkg.exports['./package.json']).toBe('./package.json');
    for (const sp of subpaths) {
      const entry = pkg.exports[sp] as Record<string, string>;
      expect(Object.keys(entry), sp).toEqual(['types', 'import', 'require']); // "types" first: TypeScript takes the first match
      const want = path.join(src, sp === '.' ? 'index.ts' : `${sp.slice(2)}/index.ts`);
      for (const [cond, target] of Object.entries(entry)) {
        expect(target, `${sp} ${cond}`).toMatch(cond === 'types' ? /^\.\/.*\.d\.ts$/ : /^\.\/.*\.js$/);
        expect(sourceOf(target), `${sp} ${cond}`).toBe(want);
      }
      expect(fs.existsSync(want), want).toBe(true);
    }
    // main, types and bin keep working (the root entry is main's file)
    expect(sourceOf(pkg.main)).toBe(path.join(src, 'index.ts'));
    expect(sourceOf(pkg.types)).toBe(path.join(src, 'index.ts'));
    expect(sourceOf(pkg.bin.vwlmm)).toBe(path.join(src, 'cli.ts'));
    expect(path.resolve(root, pkg.main)).toBe(path.resolve(root, (pkg.exports['.'] as Record<string, string>).require));
    // typesVersions: the subpaths' types for TypeScript's older "node" module resolution, the same files
    for (const a of AREAS) expect(pkg.typesVersions?.['*']?.[a], a).toEqual([(pkg.exports[`./${a}`] as Record<string, string>).types.slice(2)]);
  });

  it('loads by name from CommonJS and ES modules: every export of the root and each subpath', () => {
    // What tsc emits, module by module (transpiled without type checking, as fast as a test needs), in a
    // package that a consumer's node_modules links to; the native addon is the checkout's build.
    const dir = tmp(), pkgDir = path.join(dir, 'vwlmm'), consumer = path.join(dir, 'consumer');
    const walk = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.ts') ? [path.join(d, e.name)] : []));
    for (const f of walk(rootDir)) {
      const out = path.join(pkgDir, path.relative(root, outDir), path.relative(rootDir, f).replace(/\.ts$/, '.js'));
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, ts.transpileModule(fs.readFileSync(f, 'utf8'), { compilerOptions: parsed.options, fileName: f }).outputText);
    }
    fs.copyFileSync(path.join(root, 'package.json'), path.join(pkgDir, 'package.json'));
    fs.mkdirSync(path.join(pkgDir, 'scripts'));
    fs.copyFileSync(path.join(root, 'scripts', 'build-native.js'), path.join(pkgDir, 'scripts', 'build-native.js')); // shipped ("files")
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkgDir, 'node_modules'));
    if (fs.existsSync(path.join(root, 'build'))) fs.symlinkSync(path.join(root, 'build'), path.join(pkgDir, 'build'));
    fs.mkdirSync(path.join(consumer, 'node_modules'), { recursive: true });
    fs.symlinkSync(pkgDir, path.join(consumer, 'node_modules', 'vwlmm'));
    const script = `
      import { createRequire } from 'module';
      const require = createRequire(import.meta.url);
      const report = {};
      for (const sp of ${JSON.stringify(subpaths.map((s) => (s === '.' ? 'vwlmm' : `vwlmm/${s.slice(2)}`)))}) {
        const esm = await import(sp), cjs = require(sp);
        report[sp] = { cjs: Object.keys(cjs).sort(), esm: Object.keys(esm).filter((k) => k !== 'default' && k !== '__esModule').sort(), // Node adds these two
          same: Object.keys(cjs).every((k) => esm[k] === cjs[k]) };
      }
      const { VwLmm, Trainer, loadCheckpoint, saveCheckpoint, Tensor } = await import('vwlmm');
      report.named = [VwLmm, Trainer, loadCheckpoint, saveCheckpoint, Tensor].map((v) => typeof v);
      report.version = require('vwlmm/package.json').version;
      console.log(JSON.stringify(report));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, { cjs: string[]; esm: string[]; same: boolean }> & { named: string[]; version: string };
    for (const sp of Object.keys(report).filter((k) => k.startsWith('vwlmm'))) {
      expect(report[sp].cjs.length, sp).toBeGreaterThan(3);
      expect(report[sp].esm, `${sp}: names an ES module import does not see`).toEqual(report[sp].cjs);
      expect(report[sp].same, sp).toBe(true);
    }
    expect(report.vwlmm.cjs).toEqual(Object.keys(api).sort());
    expect(report.named).toEqual(['function', 'function', 'function', 'function', 'function']);
    expect(report.version).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });
});
