/// <reference types="node" preserve="true" />
// Public API of the data pipeline: tokenizers, conversation templates with LLaVA's label masking, LLaVA
// JSON / JSONL data sets, images and CLIP preprocessing, collate, and the Sort-of-CLEVR generator with its
// word-level tokenizer. Re-exported by the package root and by 'vwlmm/data'.
export { TextTokenizer } from './tokenizer';
export type { TextTokenizerOptions, TokenizerConfigObject, EncodeOptions, DecodeOptions } from './tokenizer';
export {
  IMAGE_TOKEN, IMAGE_TOKEN_INDEX, IGNORE_INDEX, SHORT_ANSWER_PROMPT, PLAIN, VICUNA_V1, LLAVA_V1, V1_MMTAG, MISTRAL, MISTRAL_INSTRUCT, TEMPLATES,
  getTemplate, moveImageToFront, buildSegments, buildPrompt, tokenizerImageToken, tokenizeConversation, buildGenerationPrompt, jinjaChatTemplate,
} from './conversation';
export type {
  SeparatorStyle, ConversationTemplate, TemplateName, Turn, PromptSegment, ImageTokenizeOptions, TokenizeConversationOptions,
  TokenizedConversation, GenerationPrompt,
} from './conversation';
export { LlavaDataset, readLlavaRecords, validateLlavaRecord, jsonListElements } from './dataset';
export type { LlavaRole, LlavaTurn, LlavaRecord, RecordPosition, SkippedRecord, ReadLlavaOptions, ImageSkip, DatasetItem, BatchOptions } from './dataset';
export {
  CLIP_MEAN, CLIP_STD, loadImage, probeImage, decodeImage, clipView, preprocessClip, normalizeRgb, normalizeRgbInto, normalizeRgbWriter, expandToSquare, padColour, resizeRgb, shortestSideSize,
} from './images';
export type { RgbImage, AspectMode, ClipPreprocessOptions } from './images';
export { collate, nextTokenTargets, visualWordRows } from './collate';
export type { CollateSample, CollateOptions, Batch, ImageWriter } from './collate';
// Sort-of-CLEVR: the generic-sounding constants get the data set's name at this level. Its
// SHORT_ANSWER_PROMPT and VICUNA_SYSTEM_PROMPT (the vocabulary's source texts) stay internal: the
// conversation module's SHORT_ANSWER_PROMPT above is the one prompts are built with.
export {
  writeSortOfClevr, writeSceneImage, sortOfClevrSplit, generateScene, renderScene, questionsFor, questionText, answerFor, captionFor, positionWords, encodePng, sortOfClevrImageName,
  sortOfClevrVocabulary, COLOURS, COLOUR_RGB, QUESTION_TEMPLATES, NON_RELATIONAL_KINDS, RELATIONAL_KINDS, SORT_OF_CLEVR_GENERATOR_VERSION, SORT_OF_CLEVR_MAX_IMAGES, SORT_OF_CLEVR_OUTPUTS, removeSortOfClevr,
  IMAGE_SIZE as SORT_OF_CLEVR_IMAGE_SIZE,
} from './sort_of_clevr';
export type {
  Scene, SceneObject, SortOfClevrQuestion, SortOfClevrRecord, SortOfClevrSummary, WriteSortOfClevrOptions, Colour, Shape, QuestionKind,
  QuestionGroup, NonRelationalKind, RelationalKind, LlavaTurnOut, QuestionCounts,
} from './sort_of_clevr';
export { SceneImageWriter, spareImageWorkers } from './scene_writer';
export { ClipImageWorkers } from './clip_workers';
export type { SceneImageJob, SceneImageWriterOptions } from './scene_writer';
export type { ClipImageWorkersOptions } from './clip_workers';
export {
  writeWordLevelTokenizer, wordLevelTokenizerJson, wordLevelPreTokenize, wordLevelNormalize, WORD_LEVEL_SPECIAL_TOKENS, WORD_LEVEL_TOKENIZER_CONFIG,
} from './word_level_tokenizer';
export type { WordLevelTokenizerOptions } from './word_level_tokenizer';
export { readSentencePieceModel, llamaTokenizerJson, tokenizerJsonFromSentencePiece } from './sentencepiece';
export type { SentencePiece, SentencePieceModel, LlamaTokenizerOptions, AddedTokenSpec } from './sentencepiece';
