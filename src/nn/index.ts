export { Module, ModuleList, normalParam, constParam } from './module';
export type { HostTensor, InitOptions } from './module';
export { Linear, Embedding, RMSNorm, LayerNorm } from './layers';
export { LlamaAttention, LlamaMLP, LlamaDecoderLayer, LlamaDecoder, LlamaForCausalLM, KVCache, llamaConfigFromHF, llamaConfigToHF } from './llama';
export type { LlamaConfig, DecoderOutput } from './llama';
export { ClipVisionTransformer, ClipVisionModel, clipConfigFromHF, clipConfigToHF } from './clip';
export type { ClipVisionConfig, VisionOutput } from './clip';
export { Projector, parseProjectorType } from './projector';
