/// <reference types="node" preserve="true" />
// Public API of the model: VW-LMM, its LLaVA-layout config, checkpoints (ours and transformers' LLaVA layout)
// and the safetensors files they are made of. Re-exported by the package root and by 'vwlmm/model'.
export { VwLmm } from './vwlmm';
export type { ModelBatch, LossOutput, GenerateOptions, GeneratePrompt, CreateOptions, ConfigUpdate, LlavaModel } from './vwlmm';
export {
  CLIP_MEAN, CLIP_STD, hasVmHead, numImageTokens, validateConfig, configToJson, configFromJson, clipPreprocessOptions, architectureOf,
} from './config';
export type { TemplateName, ImageConfig, VwLmmConfig } from './config';
export { saveCheckpoint, loadCheckpoint, checkpointConfig, assembleLlava, resolveCheckpointDir, checkpointTargetProblem, saveLeftovers, checkTokenizerVocab, readCheckpointWeights, forEachCheckpointTensor, checkpointTensorNames, hubCacheRoot, hubCacheFolder } from './checkpoint';
export type { SaveOptions, LoadOptions, AssembleOptions } from './checkpoint';
export {
  LLAVA_TRANSFORMERS_NAMES, isTransformersLlavaConfig, configFromTransformers, configToTransformers, processorConfigsToTransformers,
  weightsFromTransformers, weightsToTransformers, ourNameFromTransformers, transformersNameFromOurs,
} from './transformers_llava';
export {
  readSafetensors, readSafetensorsWithMetadata, readSafetensorsHeader, writeSafetensors, SafetensorsError, forEachSafetensor,
} from '../io/safetensors';
export type { HostTensor, LazyHostTensor, HostDType, SafetensorsHeader, SafetensorsEntry, ReadOptions } from '../io/safetensors';
export { readTorchBin, TorchPickleError, forEachTorchTensor, torchBinTensorNames } from '../io/torch_bin';
export { resizeTokenEmbeddings, dropVmHead } from './resize';
export type { ReshapeOptions } from './resize';
export { applyLora, loadLoraAdapter, saveLoraAdapter, mergeLora, removeLora, loraParameters, loraConfigOf } from './lora';
export type { LoraConfig, WithDecoder, AdapterLayout, SaveLoraAdapterOptions } from './lora';
