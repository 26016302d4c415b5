// Conversation templates, prompts and supervised labels for LLaVA-1.5-style training (VISUAL_WORDS.md,
// section 5), following LLaVA's conversation.py / train.py and VW-LMM's own conversation.py.
//
// Prompt strings (q = human turn, a = assistant reply; "<image>" already moved to the front of its turn):
//   plain      (stage 1)  "<image>" + a + "\n"                       human text other than <image> dropped
//   vicuna_v1  (stage 2)  SYSTEM + " " + "USER: " + q + " " + "ASSISTANT: " + a + "</s>" + "USER: " + ...
//                         (LLaVA SeparatorStyle.TWO, sep " ", sep2 "</s>": role + ": " + message + sep|sep2; an empty
//                         message is the bare role + ":"); llava_v1 and v1_mmtag differ in SYSTEM, and v1_mmtag's
//                         training prompts write the image as "<Image><image></Image>"
//   mistral    (VW-LMM)   "[INST] " + q + " [/INST]" + a + "</s>" + "[INST] " + ... (VW-LMM's
//                         SeparatorStyle.MISTRAL: sep "", sep2 "</s>", no system prompt, no space before a; an
//                         empty message left out whole and an empty first one refused, as for mistral_instruct)
//   mistral_instruct      "[INST] " + q + " [/INST]" + " " + a + " " + "</s>" + ... (LLaVA's
//                         conv_mistral_instruct: SeparatorStyle.LLAMA_2 with sep "" and sep2 "</s>"; a
//                         non-empty system prompt would be wrapped as "<<SYS>>\n...\n<</SYS>>\n\n" in turn 1; an
//                         empty message is left out whole, an empty first one refused as LLaVA asserts)
// Supervised (labelled) text: the assistant replies including what follows them up to and including
// sep2 ("</s>", tokenised as the EOS added token); for plain the caption + "\n". Everything else (BOS,
// system prompt, human turns, role names, "<image>") is labelled -100. The boundary before a reply is
// placed where tokenizers do not merge across it: vicuna masks "... ASSISTANT:" and supervises " " + a
// (the space belongs to the reply: SentencePiece turns it into the "▁" of the reply's first token, which
// is why LLaVA subtracts 2, not 1, from its instruction length).
//
// Tokenisation (LLaVA tokenizer_image_token): the prompt is split on "<image>", each chunk is encoded on
// its own without special tokens, -200 is inserted between chunks, and BOS is put once at the very front.
//
// Labels and the tokenisation-mismatch check: the prompt is a list of segments, each supervised or not.
// The whole prompt is tokenised at once (these are the input ids). The token boundary of each segment is
// found by tokenising the prompt up to that segment boundary (within its <image> chunk, since chunks are
// encoded independently): if those tokens are exactly the first tokens of the whole-prompt tokenisation,
// the boundary is clean and its token index is their count; the tokens between the boundaries of a
// supervised segment get labels = their ids. If at any boundary the prefix tokens are not a prefix of the
// whole-prompt tokens (a tokenizer merged characters across the boundary, e.g. ":" + " " into one token)
// the per-segment counts no longer add up to the whole-prompt token sequence: LLaVA's "tokenization
// mismatch". Then `mismatch` is true and every label is -100 (LLaVA's behaviour), so the caller can
// count and report such samples instead of training on misaligned labels. (Tokenising each segment in
// isolation instead would flag every sample for SentencePiece/LLaMA tokenizers, which prepend "▁" to
// every piece of text they encode; measuring prefixes makes the check exact for any tokenizer.) To keep
// this linear in the prompt length, a boundary is measured from the previous boundary that ends with
// sep2 ("</s>", an added token: tokenizers split there before normalising) by encoding sep2 + the text
// since then; `exactPrefixes: true` re-encodes the chunk from its start instead (same result for HF-style
// tokenizers; the test suite checks both on every fixture).
//
// Truncation: like LLaVA (its collator slices input_ids and labels to tokenizer.model_max_length), input
// ids and labels are cut to the first maxLength entries (-200 counts as one entry here; the sequence is
// expanded to numPatches positions later, in collate). numImages counts the placeholders that survive.
import type { TextTokenizer } from './tokenizer';

export const IMAGE_TOKEN = '<image>';
export const IMAGE_TOKEN_INDEX = -200;
export const IGNORE_INDEX = -100;
/** LLaVA-1.5's suffix for short-answer evaluation questions (VQAv2, GQA, VizWiz, TextVQA, ...). */
export const SHORT_ANSWER_PROMPT = '\nAnswer the question using a single word or phrase.';

/** How turns are joined (the LLaVA/VW-LMM SeparatorStyle of the template). */
export type SeparatorStyle = 'plain' | 'two' | 'mistral' | 'llama_2';

export interface ConversationTemplate {
  readonly name: string;
  readonly style: SeparatorStyle;
  /** System prompt ('' for none). */
  readonly system: string;
  /** [user role, assistant role] names as written into the prompt. */
  readonly roles: readonly [string, string];
  /** First separator: after the system prompt and after each user turn (two); before each [INST] (llama_2, mistral); after the caption (plain). */
  readonly sep: string;
  /** Second separator: the end of each assistant turn ("</s>"), supervised with the reply. */
  readonly sep2: string;
  /**
   * LLaVA's "mmtag" versions: training prompts (preprocess_multimodal, after moving the image to the front) write the
   * image as "<Image><image></Image>". LLaVA's eval loaders do not wrap it (only their system prompt differs).
   */
  readonly imageTag?: boolean;
}

export const PLAIN: ConversationTemplate = Object.freeze({
  name: 'plain', style: 'plain', system: '', roles: Object.freeze(['', '']) as readonly [string, string], sep: '\n', sep2: '',
});

export const VICUNA_V1: ConversationTemplate = Object.freeze({
  name: 'vicuna_v1',
  style: 'two',
  system:
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
  roles: Object.freeze(['USER', 'ASSISTANT']) as readonly [string, string],
  sep: ' ',
  sep2: '</s>',
});

/** LLaVA's `llava_v1`: vicuna_v1 with "human" for "user" in the system prompt. */
export const LLAVA_V1: ConversationTemplate = Object.freeze({
  ...VICUNA_V1,
  name: 'llava_v1',
  system:
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.",
});

/** LLaVA's `v1_mmtag`: the vicuna_v1 format, a system prompt that announces the image tags, and the tags in training prompts. */
export const V1_MMTAG: ConversationTemplate = Object.freeze({
  ...VICUNA_V1,
  name: 'v1_mmtag',
  system:
    'A chat between a curious user and an artificial intelligence assistant. The assistant is able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.' +
    'The visual content will be provided with the following format: <Image>visual content</Image>.',
  imageTag: true,
});

/** VW-LMM's `mistral` template (SeparatorStyle.MISTRAL): "[INST] q [/INST]a</s>". */
export const MISTRAL: ConversationTemplate = Object.freeze({
  name: 'mistral', style: 'mistral', system: '', roles: Object.freeze(['USER', 'ASSISTANT']) as readonly [string, string], sep: '', sep2: '</s>',
});

/** LLaVA's `mistral_instruct` template (SeparatorStyle.LLAMA_2): "[INST] q [/INST] a </s>". */
export const MISTRAL_INSTRUCT: ConversationTemplate = Object.freeze({
  name: 'mistral_instruct', style: 'llama_2', system: '', roles: Object.freeze(['USER', 'ASSISTANT']) as readonly [string, string], sep: '', sep2: '</s>',
});

export const TEMPLATES: Readonly<Record<string, ConversationTemplate>> = Object.freeze({
  plain: PLAIN,
  vicuna_v1: VICUNA_V1,
  v1: VICUNA_V1,
  llava_v1: LLAVA_V1,
  v1_mmtag: V1_MMTAG,
  mistral: MISTRAL,
  mistral_instruct: MISTRAL_INSTRUCT,
});

export type TemplateName = 'plain' | 'vicuna_v1' | 'v1' | 'llava_v1' | 'v1_mmtag' | 'mistral' | 'mistral_instruct';

/** A template by name (or the template itself); throws listing the known names. */
export function getTemplate(template: ConversationTemplate | TemplateName | string): ConversationTemplate {
  if (typeof template !== 'string') {
    if (template && typeof template === 'object' && typeof template.style === 'string') return template;
    throw new TypeError('getTemplate: expected a template name or a ConversationTemplate object');
  }
  const t = TEMPLATES[template];
  if (!t) throw new Error(`getTemplate: unknown conversation template "${template}" (known: ${Object.keys(TEMPLATES).join(', ')})`);
  return t;
}

/** One turn in LLaVA's data format. `from`: "human" | "gpt" ("user" | "assistant" are accepted too). */
export interface Turn {
  from: string;
  value: string;
}

/** A piece of the prompt and whether its tokens are supervised. */
export interface PromptSegment {
  text: string;
  supervised: boolean;
}

function roleIndex(from: unknown, i: number): 0 | 1 {
  if (from === 'human' || from === 'user') return 0;
  if (from === 'gpt' || from === 'assistant') return 1;
  throw new Error(`conversation turn ${i}: unknown role ${JSON.stringify(from)} (expected "human" or "gpt")`);
}

/**
 * LLaVA preprocess_multimodal: in every turn that contains "<image>", all occurrences are removed and a
 * single "<image>\n" is put at the front (then the text is trimmed). In LLaVA data this is the first human turn.
 */
export function moveImageToFront(conversations: readonly Turn[]): Turn[] {
  return conversations.map((t) => {
    if (typeof t.value !== 'string' || !t.value.includes(IMAGE_TOKEN)) return { from: t.from, value: t.value };
    const rest = t.value.split(IMAGE_TOKEN).join('').trim();
    return { from: t.from, value: `${IMAGE_TOKEN}\n${rest}`.trim() };
  });
}

interface NormTurn {
  role: 0 | 1;
  value: string;
}

/** Validates the turns, drops a leading assistant turn (LLaVA), and checks that roles alternate. */
function normalizeTurns(conversations: readonly Turn[], moveImage: boolean): NormTurn[] {
  if (!Array.isArray(conversations)) throw new TypeError('conversation: expected an array of { from, value } turns');
  conversations.forEach((t, i) => {
    if (!t || typeof t !== 'object' || typeof t.value !== 'string') {
      throw new TypeError(`conversation turn ${i}: expected { from: string, value: string }`);
    }
  });
  const src = moveImage ? moveImageToFront(conversations) : conversations;
  let turns = src.map((t, i) => ({ role: roleIndex(t.from, i), value: t.value, index: i }));
  if (turns.length > 0 && turns[0].role !== 0) turns = turns.slice(1); // LLaVA: skip a first turn not from the human
  turns.forEach((t, j) => {
    if (t.role !== j % 2) {
      throw new Error(
        `conversation turn ${t.index}: roles must alternate human, gpt, human, ... (got two ${t.role === 0 ? 'human' : 'gpt'} turns in a row)`,
      );
    }
  });
  return turns.map((t) => ({ role: t.role, value: t.value }));
}

function pushSeg(segs: PromptSegment[], text: string, supervised: boolean): void {
  if (text.length === 0) return;
  const last = segs[segs.length - 1];
  if (last && last.supervised === supervised) last.text += text;
  else segs.push({ text, supervised });
}

function renderSegments(turns: NormTurn[], t: ConversationTemplate, generation: boolean): PromptSegment[] {
  const segs: PromptSegment[] = [];
  const [user, assistant] = t.roles;
  switch (t.style) {
    case 'plain': {
      // LLaVA preprocess_plain: exactly (human with <image>, gpt); the human text is reduced to "<image>".
      const first = turns[0];
      if (!first || !first.value.includes(IMAGE_TOKEN)) {
        throw new Error('plain template: the first human turn must contain <image> (LLaVA preprocess_plain)');
      }
      if (generation) {
        if (turns.length !== 1) throw new Error('plain template: a generation prompt takes exactly one human turn');
        pushSeg(segs, IMAGE_TOKEN, false);
        return segs;
      }
      if (turns.length !== 2) throw new Error(`plain template: expected exactly 2 turns (human, gpt), got ${turns.length}`);
      pushSeg(segs, IMAGE_TOKEN, false);
      pushSeg(segs, turns[1].value + t.sep, true);
      return segs;
    }
    case 'two': {
      pushSeg(segs, t.system + t.sep, false);
      for (const turn of turns) {
        if (turn.role === 0) {
          // LLaVA's get_prompt writes an empty message as the bare role + ":" (no space, no separator)
          pushSeg(segs, turn.value ? `${user}: ${turn.value}${t.sep}` : `${user}:`, false);
        } else if (turn.value) {
          pushSeg(segs, `${assistant}:`, false);
          pushSeg(segs, ` ${turn.value}${t.sep2}`, true);
        } else {
          // an empty reply is the bare role + ":" too: nothing to supervise, not even sep2
          pushSeg(segs, `${assistant}:`, false);
        }
      }
      if (generation) pushSeg(segs, `${assistant}:`, false);
      return segs;
    }
    case 'mistral':
    case 'llama_2': {
      if (turns.length > 0 && !turns[0].value) {
        throw new Error(`${t.name} template: the first human turn is empty (LLaVA's and VW-LMM's get_prompt assert a first message)`);
      }
      turns.forEach((turn, i) => {
        // get_prompt (LLaVA's LLAMA_2, VW-LMM's MISTRAL) writes nothing for an empty message: no [INST] pair, no
        // "</s>" to supervise
        if (!turn.value) return;
        if (turn.role === 0) {
          let msg = turn.value;
          if (i === 0 && t.style === 'llama_2' && t.system.length > 0) msg = `<<SYS>>\n${t.system}\n<</SYS>>\n\n${msg}`;
          // Python's ret.lstrip(sep) removes the separator in front of the first [INST].
          pushSeg(segs, `${i === 0 ? '' : t.sep}[INST] ${msg} [/INST]`, false);
        } else if (t.style === 'mistral') {
          pushSeg(segs, `${turn.value}${t.sep2}`, true);
        } else {
          pushSeg(segs, ` ${turn.value} ${t.sep2}`, true);
        }
      });
      return segs;
    }
    default:
      throw new Error(`conversation template ${t.name}: unknown separator style ${String((t as ConversationTemplate).style)}`);
  }
}

/** The prompt of a whole conversation as its supervised / unsupervised segments (see the file comment). */
export function buildSegments(
  conversations: readonly Turn[],
  template: ConversationTemplate | TemplateName,
  options: { moveImageToFront?: boolean } = {},
): PromptSegment[] {
  const t = getTemplate(template);
  const move = options.moveImageToFront ?? true;
  let turns = normalizeTurns(conversations, move);
  if (move && t.imageTag) turns = turns.map((x) => ({ role: x.role, value: x.value.split(IMAGE_TOKEN).join(`<Image>${IMAGE_TOKEN}</Image>`) }));
  return renderSegments(turns, t, false);
}

/** The training prompt string of a conversation (LLaVA conv.get_prompt() after preprocess_multimodal). */
export function buildPrompt(
  conversations: readonly Turn[],
  template: ConversationTemplate | TemplateName,
  options: { moveImageToFront?: boolean } = {},
): string {
  return buildSegments(conversations, template, options).map((s) => s.text).join('');
}

export interface ImageTokenizeOptions {
  /** Id inserted for each "<image>" (default -200). */
  imageTokenIndex?: number;
  /**
   * Put BOS at the very front (default: when the tokenizer puts one in front of a text, TextTokenizer.addsBos, as
   * LLaVA's tokenizer_image_token keeps the BOS that tokenizer(chunk) gives; none with add_bos_token false).
   */
  addBos?: boolean;
}

/** LLaVA tokenizer_image_token: split on "<image>", encode each chunk, -200 between chunks, BOS once in front. */
export function tokenizerImageToken(text: string, tokenizer: TextTokenizer, options: ImageTokenizeOptions = {}): number[] {
  const imageTokenIndex = options.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  const ids = (options.addBos ?? tokenizer.addsBos) ? tokenizer.encode('', { addBos: true }) : [];
  text.split(IMAGE_TOKEN).forEach((chunk, i) => {
    if (i > 0) ids.push(imageTokenIndex);
    for (const id of tokenizer.encode(chunk)) ids.push(id);
  });
  return ids;
}

export interface TokenizeConversationOptions extends ImageTokenizeOptions {
  /** Cut input ids and labels to this many entries (default 2048, LLaVA's model_max_length). */
  maxLength?: number;
  /** Apply LLaVA's preprocess_multimodal (default true). */
  moveImageToFront?: boolean;
  /**
   * Measure every segment boundary by re-tokenising the chunk from its start (O(turns * length)) instead
   * of from the last "</s>" boundary (default false; both give the same result for HF tokenizers).
   */
  exactPrefixes?: boolean;
}

export interface TokenizedConversation {
  /** Whole-prompt token ids, -200 per image placeholder, BOS first; truncated to maxLength. */
  inputIds: number[];
  /** Per-position labels (the id itself where supervised, -100 elsewhere); not shifted. */
  labels: number[];
  /** Image placeholders in inputIds. */
  numImages: number;
  /**
   * LLaVA's "tokenization mismatch": a token merged across a segment boundary, or (vicuna_v1 and mistral_instruct
   * styles) a prompt LLaVA's round split cannot label (roundSplitFailure); all labels are then -100.
   */
  mismatch: boolean;
  /** What mismatched (null when mismatch is false). */
  mismatchDetail: string | null;
  /** Whether maxLength cut the sequence. */
  truncated: boolean;
  /** Token count of the whole prompt before truncation. */
  fullLength: number;
  /** The prompt string. */
  prompt: string;
}

function checkMaxLength(where: string, maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`${where}: maxLength must be a positive integer, got ${maxLength}`);
}

/**
 * Prompt, input ids and labels of a training conversation (LLaVA preprocess_* + tokenizer_image_token).
 * See the file comment for the masking rule, the mismatch check and truncation.
 */
export function tokenizeConversation(
  conversations: readonly Turn[],
  tokenizer: TextTokenizer,
  template: ConversationTemplate | TemplateName,
  options: TokenizeConversationOptions = {},
): TokenizedConversation {
  const maxLength = options.maxLength ?? 2048;
  const imageTokenIndex = options.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  const addBos = options.addBos ?? tokenizer.addsBos;
  checkMaxLength('tokenizeConversation', maxLength);
  const segs = buildSegments(conversations, template, { moveImageToFront: options.moveImageToFront ?? true });
  const prompt = segs.map((s) => s.text).join('');

  // Whole prompt, chunk by chunk (chunks are encoded independently, as LLaVA does).
  const chunks = prompt.split(IMAGE_TOKEN);
  const chunkStart: number[] = []; // character offset of each chunk in the prompt
  const chunkTokStart: number[] = []; // token offset of each chunk in the input ids
  const chunkIds: number[][] = [];
  const inputIds: number[] = addBos ? tokenizer.encode('', { addBos: true }) : [];
  let c = 0;
  chunks.forEach((chunk, i) => {
    if (i > 0) {
      inputIds.push(imageTokenIndex);
      c += IMAGE_TOKEN.length;
    }
    chunkStart.push(c);
    chunkTokStart.push(inputIds.length);
    const ids = tokenizer.encode(chunk);
    chunkIds.push(ids);
    for (const id of ids) inputIds.push(id);
    c += chunk.length;
  });

  // Token index of each segment boundary, measured by tokenising the prompt up to it (see the file
  // comment). Speed-up (exactPrefixes: false): text after an added special token is tokenised
  // independently of the text before it (tokenizers split on added tokens before normalising), so a
  // boundary is measured from the last verified boundary that ends with sep2 ("</s>"), re-encoding
  // sep2 + the text since then instead of the whole chunk prefix: O(prompt) instead of O(turns * prompt).
  const t = getTemplate(template);
  const anchorIds = t.sep2.length > 0 ? tokenizer.encode(t.sep2) : [];
  const anchorId = !options.exactPrefixes && anchorIds.length === 1 ? anchorIds[0] : null;
  let anchor: { chunk: number; char: number; tok: number } | null = null;
  let mismatchDetail: string | null = null;
  const bounds: number[] = [addBos ? 1 : 0]; // BOS is masked
  let charPos = 0;
  for (let k = 0; k < segs.length; k++) {
    charPos += segs[k].text.length;
    if (k === segs.length - 1) {
      bounds.push(inputIds.length);
      break;
    }
    let j = 0; // the chunk holding the boundary (a boundary never falls inside "<image>")
    while (j + 1 < chunks.length && chunkStart[j + 1] <= charPos) j++;
    const chunkEnd = chunkTokStart[j] + chunkIds[j].length;
    if (charPos - chunkStart[j] > chunks[j].length) {
      mismatchDetail = `segment boundary ${k + 1} falls inside an ${IMAGE_TOKEN} placeholder`;
      break;
    }
    let from = chunkTokStart[j];
    let pids: number[] | null = null;
    if (anchor !== null && anchor.chunk === j) {
      const ids = tokenizer.encode(t.sep2 + prompt.slice(anchor.char, charPos));
      if (ids[0] === anchorId) {
        pids = ids.slice(1);
        from = anchor.tok;
      }
    }
    if (pids === null) pids = tokenizer.encode(prompt.slice(chunkStart[j], charPos));
    let diffAt = -1;
    for (let i = 0; i < pids.length; i++) {
      if (from + i >= chunkEnd || pids[i] !== inputIds[from + i]) {
        diffAt = from + i;
        break;
      }
    }
    const b = from + pids.length;
    if (diffAt >= 0 || b < bounds[bounds.length - 1]) {
      mismatchDetail =
        `the prompt up to segment boundary ${k + 1} (character ${charPos}, before ${segs[k + 1].supervised ? 'a supervised' : 'an unsupervised'} segment) ` +
        `does not tokenise to a prefix of the whole-prompt tokens (${inputIds.length} tokens; first difference at token ${diffAt >= 0 ? diffAt : b})`;
      break;
    }
    bounds.push(b);
    if (anchorId !== null && segs[k].text.endsWith(t.sep2) && b > 0 && inputIds[b - 1] === anchorId) anchor = { chunk: j, char: charPos, tok: b };
  }

  if (mismatchDetail === null) mismatchDetail = roundSplitFailure(prompt, t);
  const fullLength = inputIds.length;
  let labels = new Array<number>(fullLength).fill(IGNORE_INDEX);
  if (mismatchDetail === null) {
    for (let k = 0; k < segs.length; k++) {
      if (!segs[k].supervised) continue;
      for (let p = bounds[k]; p < bounds[k + 1]; p++) if (inputIds[p] !== imageTokenIndex) labels[p] = inputIds[p];
    }
  }
  const truncated = fullLength > maxLength;
  const ids = truncated ? inputIds.slice(0, maxLength) : inputIds;
  if (truncated) labels = labels.slice(0, maxLength);
  let numImages = 0;
  for (const id of ids) if (id === imageTokenIndex) numImages++;
  return {
    inputIds: ids, labels, numImages, mismatch: mismatchDetail !== null, mismatchDetail, truncated, fullLength, prompt,
  };
}

/**
 * LLaVA's preprocess_v1 (SeparatorStyle.TWO) and preprocess_llama_2 (LLAMA_2) label a prompt round by round: they split
 * the prompt on sep2 ("</s>") and each round on sep + assistant role + ": " (" ASSISTANT: ") or "[/INST] ", and stop
 * at the first round that is empty or does not split in two. Text left after that point makes the token count
 * disagree, and the whole sample is masked as a "tokenization mismatch". That happens to a conversation that ends
 * with a human turn or an empty reply, and to a turn that contains the round separator or "</s>". The reason, or
 * null when the split goes through.
 */
function roundSplitFailure(prompt: string, t: ConversationTemplate): string | null {
  if (t.style !== 'two' && t.style !== 'llama_2') return null;
  const rounds = prompt.split(t.sep2), sep = t.style === 'two' ? `${t.sep}${t.roles[1]}: ` : '[/INST] ';
  for (let i = 0; i < rounds.length; i++) {
    if (rounds[i] === '') {
      if (i === rounds.length - 1) return null;
      return `round ${i + 1} of the prompt is empty ("${t.sep2}" written in a reply?): LLaVA's round split stops there and masks the sample`;
    }
    const parts = rounds[i].split(sep).length;
    if (parts !== 2) {
      return parts < 2
        ? `round ${i + 1} of the prompt has no reply (the conversation ends with a human turn or an empty reply, or "${t.sep2}" is written in a turn): LLaVA masks the sample`
        : `round ${i + 1} of the prompt holds "${sep}" ${parts - 1} times (written in a turn?): LLaVA's round split stops there and masks the sample`;
    }
  }
  return null;
}

export interface GenerationPrompt {
  /** The prompt, ending with the assistant's cue ("ASSISTANT:" for vicuna_v1, " [/INST]" for mistral). */
  prompt: string;
  /** Its tokens (tokenizer_image_token with BOS), or null when no tokenizer was given. */
  inputIds: number[] | null;
  numImages: number;
}

/**
 * The prompt for greedy decoding of the next assistant reply (LLaVA eval: conv.append_message(roles[1],
 * None); conv.get_prompt()). `conversations` ends with the human question (for short-answer benchmarks
 * append SHORT_ANSWER_PROMPT to it). The plain template gives just "<image>" (as in its training prompt;
 * LLaVA's eval loaders give the human turn + "\n": answerPrompt in src/eval/answer.ts).
 */
export function buildGenerationPrompt(
  conversations: readonly Turn[],
  template: ConversationTemplate | TemplateName,
  tokenizer?: TextTokenizer | null,
  options: ImageTokenizeOptions & { moveImageToFront?: boolean } = {},
): GenerationPrompt {
  const t = getTemplate(template);
  const turns = normalizeTurns(conversations, options.moveImageToFront ?? true);
  if (turns.length === 0 || turns[turns.length - 1].role !== 0) {
    throw new Error('buildGenerationPrompt: the conversation must end with a human turn (the question to answer)');
  }
  const prompt = renderSegments(turns, t, true).map((s) => s.text).join('');
  const numImages = prompt.split(IMAGE_TOKEN).length - 1;
  const inputIds = tokenizer ? tokenizerImageToken(prompt, tokenizer, options) : null;
  return { prompt, inputIds, numImages };
}

/**
 * The template as a Jinja chat template (chat_template.jinja of a transformers-format save), so that transformers'
 * apply_chat_template writes the prompts buildPrompt / buildGenerationPrompt write: messages with roles user and
 * assistant, alternating (a leading assistant message dropped, as LLaVA drops one), and a first system message, which
 * replaces the template's system prompt; each content a string or a list of { type: 'image' } and { type: 'text', text }
 * items. As preprocess_multimodal, a message's <image> goes to its front, followed by "\n" (one per image item, for
 * transformers' processor, which wants one per image); mmtag templates' <Image> tags are left out, as LLaVA's eval
 * loaders leave them out. What buildPrompt refuses (roles out of turn, a plain prompt without its image) raises.
 */
export function jinjaChatTemplate(template: ConversationTemplate | TemplateName): string {
  const t = getTemplate(template);
  const str = (s: string) => JSON.stringify(s); // a JSON string is a Jinja string literal
  const raise = (why: string) => `{{ raise_exception(${str(`chat template ${t.name}: ${why}`)}) }}`;
  const [user, assistant] = t.roles;
  const noSystem = ["{%- if messages and messages[0]['role'] == 'system' -%}", raise('the template has no system prompt'), '{%- endif -%}'];
  const lines = [
    // a message's text, its images in front as preprocess_multimodal puts them
    '{%- macro content(m) -%}',
    "{%- set ns = namespace(images=0, text='') -%}",
    "{%- if m['content'] is string -%}{%- set ns.text = m['content'] -%}",
    "{%- else -%}{%- for c in m['content'] -%}",
    "{%- if c['type'] == 'image' -%}{%- set ns.images = ns.images + 1 -%}",
    "{%- elif c['type'] == 'text' -%}{%- set ns.text = ns.text + (' ' if ns.text else '') + c['text'] -%}{%- endif -%}",
    '{%- endfor -%}{%- endif -%}',
    "{%- if ns.images or '<image>' in ns.text -%}{{ ('<image>\\n' * [ns.images, 1]|max + ns.text.replace('<image>', '').strip()).strip() }}",
    '{%- else -%}{{ ns.text }}{%- endif -%}',
    '{%- endmacro -%}',
    // the system prompt: a first system message's, else the template's; the turns after it, a leading reply dropped
    `{%- set system = namespace(text=${str(t.system)}) -%}`,
    "{%- set turns = messages -%}",
    "{%- if turns and turns[0]['role'] == 'system' -%}{%- set system.text = content(turns[0]) -%}{%- set turns = turns[1:] -%}{%- endif -%}",
    "{%- if turns and turns[0]['role'] == 'assistant' -%}{%- set turns = turns[1:] -%}{%- endif -%}",
    "{%- for m in turns -%}{%- if m['role'] != ('user' if loop.index0 % 2 == 0 else 'assistant') -%}",
    raise('roles alternate user, assistant, ... (a system message only first)'),
    '{%- endif -%}{%- endfor -%}',
  ];
  switch (t.style) {
    case 'plain':
      // preprocess_plain: the image alone, then the caption and "\n"
      lines.push(
        ...noSystem,
        "{%- if turns|length not in [1, 2] or '<image>' not in content(turns[0]) -%}",
        raise('one user message with the image (and its caption as the reply)'),
        '{%- endif -%}',
        "{%- for m in turns -%}{%- if m['role'] == 'user' -%}{{ '<image>' }}{%- else -%}" + `{{ content(m) + ${str(t.sep)} }}` + '{%- endif -%}{%- endfor -%}',
      );
      break;
    case 'two':
      lines.push(
        `{{- system.text + ${str(t.sep)} -}}`,
        '{%- for m in turns -%}{%- set text = content(m) -%}',
        // get_prompt writes an empty message as the bare role and ":"
        `{%- if m['role'] == 'user' -%}{{ (${str(user + ': ')} + text + ${str(t.sep)}) if text else ${str(user + ':')} }}`,
        `{%- else -%}{{ (${str(assistant + ': ')} + text + ${str(t.sep2)}) if text else ${str(assistant + ':')} }}{%- endif -%}`,
        '{%- endfor -%}',
        `{%- if add_generation_prompt -%}{{ ${str(assistant + ':')} }}{%- endif -%}`,
      );
      break;
    case 'mistral':
    case 'llama_2':
      lines.push(
        ...(t.style === 'mistral' ? noSystem : []),
        '{%- for m in turns -%}{%- set text = content(m) -%}',
        '{%- if loop.first and not text -%}', raise('the first user message is empty'), '{%- endif -%}',
        // get_prompt writes nothing for an empty message
        "{%- if text -%}{%- if m['role'] == 'user' -%}",
        t.style === 'llama_2'
          ? `{%- set text = ('<<SYS>>\\n' + system.text + '\\n<</SYS>>\\n\\n' + text) if loop.first and system.text else text -%}{{ ('' if loop.first else ${str(t.sep)}) + '[INST] ' + text + ' [/INST]' }}`
          : `{{ ('' if loop.first else ${str(t.sep)}) + '[INST] ' + text + ' [/INST]' }}`,
        t.style === 'llama_2' ? `{%- else -%}{{ ' ' + text + ' ' + ${str(t.sep2)} }}` : `{%- else -%}{{ text + ${str(t.sep2)} }}`,
        '{%- endif -%}{%- endif -%}',
        '{%- endfor -%}',
      );
      break;
  }
  return lines.join('\n') + '\n';
}
