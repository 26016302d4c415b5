// A model in another shape, for a layout that wants one: transformers' LLaVA has no vm_head, and finds images by an
// <image> token that needs a row of the vocabulary (llava-hf pads it to a multiple of 64). Each function returns a new
// model on the same device with the old one's weights (one parameter on the host at a time): both are in memory until
// the caller disposes the old one, or the old one is freed as it is copied ({ consume: true }).
import { checkKeys, rangeError, typeError } from '../errors';
import { addonFor } from '../native';
import { writeParameter } from '../nn/module';
import { hasVmHead, VwLmmConfig } from './config';
import { loraConfigOf } from './lora';
import { VwLmm } from './vwlmm';

/** The parameters with a row per vocabulary id. */
const VOCABULARY_ROWS = new Set(['model.embed_tokens.weight', 'lm_head.weight']);

/**
 * A new model of `config` holding `model`'s weights, each passed through `rows` (name, data, shape) on the way. With
 * `consume`, each old parameter is freed once copied and the rest of `model` at the end (also when the copy fails):
 * one parameter is held twice at a time, not the model (a new model's untouched memory costs nothing on the host).
 */
function rebuilt(where: string, model: VwLmm, config: VwLmmConfig, opts: ReshapeOptions, rows: (name: string, data: Float32Array, shape: number[]) => Float32Array): VwLmm {
  const consume = opts.consume === true;
  const linearDtype = model.lm_head.weight.dtype === 'bfloat16' ? 'bfloat16' : 'float32';
  // (made before anything is freed: a model too large to make leaves the old one whole)
  const out = VwLmm.create(config, 0, { device: model.device, uninitialized: true, linearDtype });
  try {
    const old = model.namedParameters();
    for (const [name, p] of out.namedParameters()) {
      const src = old.get(name)!;
      const shape = [...src.shape];
      const data = src.toArray() as Float32Array;
      if (consume) {
        src.disposeWith(`was freed by ${where}({ consume: true }), which frees the old model as it copies it: its parameter '${name}' (the old model was used after it)`);
        // the caching allocator would keep the freed block while the new model's (allocated up front) fills: back to
        // the system now, or the peak is two models again
        addonFor(model.device, where).releaseCache();
      }
      writeParameter(where, name, p, { dtype: 'float32', shape: [...p.shape], data: rows(name, data, shape) });
    }
  } catch (e) {
    out.dispose();
    if (consume) freeRest(model, `was freed by ${where}({ consume: true }), which failed`);
    throw e;
  }
  if (consume) freeRest(model, `was left out by ${where}({ consume: true }): the model it returned has no such parameter`); // (vm_head)
  return out;
}

/** The parameters of a consumed model not moved yet, each saying why it is gone (the moved ones keep their reason). */
function freeRest(model: VwLmm, why: string): void {
  for (const [name, p] of model.namedParameters()) if (!p.disposed) p.disposeWith(`${why} (its parameter '${name}'; the old model was used after it)`);
}

/** Options of resizeTokenEmbeddings and dropVmHead. */
export interface ReshapeOptions {
  /**
   * Free `model` as its weights are copied (disposed when the call returns, or when the copy fails; arguments refused,
   * or a new model too large to make, leave it as it was): the peak is one model and one parameter, not two models (a
   * 7B convert). Default false: `model` is left as it was.
   */
  consume?: boolean;
}

function checkOptions(where: string, opts: ReshapeOptions): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', 'an object with key consume', opts);
  checkKeys(where, 'option', opts, { consume: true });
  if (opts.consume !== undefined && typeof opts.consume !== 'boolean') throw typeError(where, 'consume', 'a boolean', opts.consume);
}

/** `model` as these functions take it: a VwLmm without LoRA adapters (not in the config a new model is made from). */
function checkModel(where: string, model: VwLmm): void {
  if (model === null || typeof model !== 'object' || typeof model.namedParameters !== 'function' || typeof model.config !== 'object') throw typeError(where, 'model', 'a VwLmm', model);
  if (loraConfigOf(model)) throw new Error(`${where}: the model has LoRA adapters: merge them first (mergeLora)`);
}

/**
 * The model with `vocabSize` rows in its embedding and lm_head: the new rows at the mean of the old ones, as
 * transformers' resize_token_embeddings initialises them (its mean_resizing draws around that mean), so that a new
 * token's logit is the mean of the others' and changes no greedy choice. For the <image> token a transformers-format
 * save needs (llava-hf: 32064 rows for 32000 words). Growing only: the rows the model has were trained. Not a model
 * with a vm_head (a VW-LMM's visual words, a PIF model's image features, are distributions over the vocabulary).
 */
export function resizeTokenEmbeddings(model: VwLmm, vocabSize: number, opts: ReshapeOptions = {}): VwLmm {
  const where = 'resizeTokenEmbeddings';
  checkModel(where, model);
  checkOptions(where, opts);
  // a visual word is a softmax over the vocabulary: new ids would take some of its mass (a PIF model's image features
  // moved by 0.018; a VW-LMM's KL on one batch went from 0.085 to 0.050)
  if (hasVmHead(model.config))
    throw new Error(`${where}: the model has a vm_head, whose visual words are distributions over the vocabulary: new rows would change them (and a PIF model's image features); drop it first (dropVmHead), or keep the vocabulary`);
  const old = model.config.llm.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw typeError(where, 'vocabSize', 'an integer >= 1', vocabSize);
  if (vocabSize < old) throw rangeError(where, `vocabSize ${vocabSize} is less than the model's ${old}: resizing only grows the vocabulary (its rows were trained)`);
  const config = { ...model.config, llm: { ...model.config.llm, vocabSize } };
  return rebuilt(where, model, config, opts, (name, data, shape) => {
    if (!VOCABULARY_ROWS.has(name)) return data;
    const [rows, cols] = shape;
    const mean = new Float64Array(cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) mean[c] += data[r * cols + c];
    const grown = new Float32Array(vocabSize * cols);
    grown.set(data);
    for (let r = rows; r < vocabSize; r++) for (let c = 0; c < cols; c++) grown[r * cols + c] = mean[c] / rows;
    return grown;
  });
}

/**
 * A VW-LMM as the plain LLaVA it runs as: without its vm_head, which only its training loss reads (vmWeight 0). A PIF
 * model is refused: it feeds each image through vm_head, so without it the model would see other features.
 */
export function dropVmHead(model: VwLmm, opts: ReshapeOptions = {}): VwLmm {
  const where = 'dropVmHead';
  checkModel(where, model);
  checkOptions(where, opts);
  if (model.config.pif) throw new Error(`${where}: a PIF model feeds its image features through vm_head (softmax(vm_head(x)) . E): without vm_head it would run as another model`);
  return rebuilt(where, model, { ...model.config, vmWeight: 0, detachTarget: false }, opts, (_name, data) => data);
}
