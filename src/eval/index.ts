// Public API of evaluation: exact match after normalisation (exactMatch, normalizeAnswer) and VQA soft accuracy, the
// evaluation of a LLaVA question file, and visual words (compute, draw). Generation itself is
// VwLmm.generate (its options type is re-exported here) on a prompt from buildGenerationPrompt (data).
// Re-exported by the package root and by 'vwlmm/eval'.
export { normalizeAnswer, exactMatch, evaluateFile } from './llava_eval';
export { evalAIAnswer, vqaSoftAccuracy } from './evalai';
export { scoreTextVQA, scorePope, scoreScienceQA, textvqaQuestionOf, popeAnswerIsNo, scienceQAAnswerOf, readAnswers } from './scorers';
export type { TextVQAScore, PopeCategory, ScienceQAScore, AnswerRecord } from './scorers';
export { pyRepr, pyFixed } from './pyformat';
export { answerQuestions, chunkOf } from './answer';
export { vqav2Submission, vizwizSubmission, gqaSubmission, mmvetSubmission, scoreSeed } from './submission';
export type { Submission, SeedScore } from './submission';
export type { AnswerOptions, AnswerResult } from './answer';
export type { EvalResult } from './llava_eval';
export { visualWordsOf, drawVisualWords } from './visual_words';
export type { PatchWords } from './visual_words';
export { buildGenerationPrompt } from '../data/conversation';
export type { GenerationPrompt } from '../data/conversation';
export type { GenerateOptions } from '../model/vwlmm';
