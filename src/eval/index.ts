/// <reference types="node" preserve="true" />
// Public API of evaluation: exact match after normalisation (exactMatch, normalizeAnswer) and VQA soft accuracy, the
// evaluation of a LLaVA question file, and visual words (compute, draw). Generation itself is
// VwLmm.generate (its options type is re-exported here) on a prompt from buildGenerationPrompt (data).
// Re-exported by the package root and by 'vwlmm/eval'.
export { normalizeAnswer, exactMatch, evaluateFile, scoreLlavaAnswers } from './llava_eval';
export { evalAIAnswer, vqaSoftAccuracy } from './evalai';
export { scoreTextVQA, scorePope, scoreScienceQA, textvqaQuestionOf, popeAnswerIsNo, scienceQAAnswerOf, readAnswers } from './scorers';
export type { TextVQAScore, PopeCategory, ScienceQAScore, AnswerRecord } from './scorers';
export { pyRepr, pyFixed } from './pyformat';
export { answerQuestions, answerPrompt, answerOne, answerOneDetails, chunkOf, modelIdOf } from './answer';
export { mmbenchQuestions, mmbenchSubmission } from './mmbench';
export type { MMBenchQuestion, MMBenchQuestionOptions, MMBenchSubmission } from './mmbench';
export { readXlsx, writeXlsx } from '../io/xlsx';
export type { XlsxValue } from '../io/xlsx';
export { vqav2Submission, vizwizSubmission, gqaSubmission, mmvetSubmission, scoreSeed } from './submission';
export type { Submission, SeedScore } from './submission';
export { scoreGQA, gqaPrediction } from './gqa';
export type { GQAScore, GQAGroupScore, GQAOptions } from './gqa';
export { scoreMME, convertAnswersToMME, MME_SUBTASKS } from './mme';
export type { MMEScore, MMESubtaskScore } from './mme';
export type { AnswerOptions, AnswerResult, AnswerOneOptions, AnswerDetails } from './answer';
export type { EvalResult, EvalOptions } from './llava_eval';
export { visualWordsOf, visualWordTable, patchWords, drawVisualWords } from './visual_words';
export type { PatchWords, VisualWordTable, DrawVisualWordsOptions, ModelView } from './visual_words';
export { buildGenerationPrompt } from '../data/conversation';
export type { GenerationPrompt } from '../data/conversation';
export type { GenerateOptions, GeneratePrompt } from '../model/vwlmm';
