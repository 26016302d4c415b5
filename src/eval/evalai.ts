// The VQA answer processing of EvalAI (the VQAv2 / VizWiz / TextVQA servers), as LLaVA-1.5 scores TextVQA with it
// (llava/eval/m4c_evaluator.py, EvalAIAnswerProcessor, from mmf): lower case; ',' and '?' dropped and "'s" split off;
// punctuation removed or turned into a space by EvalAI's rule; periods not followed by a digit removed (the
// first 32 only: the official call passes re.UNICODE where re.sub takes its count); number words zero..ten (and
// "none") as digits; articles dropped; apostrophe-less contractions restored. Python's whitespace is used for
// stripping and splitting, as the official code runs on Python strings. The soft VQA accuracy of one prediction
// is then min(1, matches among the other 9 humans / 3) averaged over the 10 leave-one-out subsets
// (TextVQAAccuracyEvaluator). tests/eval/official_scorers.test.ts checks both against the official code run on
// fixture answers (scripts/make_eval_fixtures.py).

// Characters Python's str.isspace() accepts (str.split() / str.strip() without arguments).
const PY_SPACE = '\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const isPySpace = (c: string) => PY_SPACE.includes(c);

/** Python's s.strip(). */
export function pyStrip(s: string): string {
  let a = 0, b = s.length;
  while (a < b && isPySpace(s[a])) a++;
  while (b > a && isPySpace(s[b - 1])) b--;
  return s.slice(a, b);
}

/** Python's s.split() (runs of whitespace, no empty words). */
export function pySplit(s: string): string[] {
  const out: string[] = [];
  let word = '';
  for (const c of s) {
    if (isPySpace(c)) {
      if (word) out.push(word);
      word = '';
    } else {
      word += c;
    }
  }
  if (word) out.push(word);
  return out;
}

const NUMBERS: Record<string, string> = {
  none: '0', zero: '0', one: '1', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9', ten: '10',
};
const ARTICLES = new Set(['a', 'an', 'the']);
// Written without apostrophes (or with them misplaced) -> EvalAI's form; the table as EvalAI has it, including
// its entries that can never match a lower-cased word (Im, Ive, ...) and its one reversed entry (somebody'd).
const CONTRACTIONS = new Map(
  ("aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've didnt=didn't " +
    "doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've " +
    "he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd " +
    "itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've " +
    "mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at " +
    "'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't " +
    "shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've somebody'dve=somebody'd've " +
    "somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've someone'dve=someone'd've " +
    "someonell=someone'll someones=someone's somethingd=something'd somethingd've=something'd've something'dve=something'd've " +
    "somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've therere=there're theres=there's " +
    "theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't " +
    "wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's " +
    "whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's whove=who've " +
    "whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't wouldnt've=wouldn't've wouldn'tve=wouldn't've " +
    "yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd " +
    "youd've=you'd've you'dve=you'd've youll=you'll youre=you're youve=you've")
    .split(' ')
    .map((kv) => kv.split('=') as [string, string]),
);
// In EvalAI's order (a replacement can create or remove the " p" / "p " context of a later one).
const PUNCTUATION = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];
const DIGIT_COMMA_DIGIT = /\p{Nd},+\p{Nd}/u; // Python's \d on str patterns: any Unicode decimal digit
const PERIOD_NOT_BEFORE_DIGIT = /\.(?!\p{Nd})/gu;
const MAX_PERIODS = 32; // re.sub(..., re.UNICODE): the flag lands in `count`

function processPunctuation(text: string): string {
  let out = text;
  const digitComma = DIGIT_COMMA_DIGIT.test(text);
  for (const p of PUNCTUATION) {
    const drop = text.includes(p + ' ') || text.includes(' ' + p) || digitComma;
    out = out.split(p).join(drop ? '' : ' ');
  }
  let n = 0;
  return out.replace(PERIOD_NOT_BEFORE_DIGIT, (m) => (n++ < MAX_PERIODS ? '' : m));
}

function processDigitArticle(text: string): string {
  const words: string[] = [];
  for (let w of pySplit(text.toLowerCase())) {
    w = NUMBERS[w] ?? w;
    if (!ARTICLES.has(w)) words.push(w);
  }
  return words.map((w) => CONTRACTIONS.get(w) ?? w).join(' ');
}

/** An answer as EvalAI compares it (see the header). */
export function evalAIAnswer(answer: string): string {
  let s = pyStrip(answer.toLowerCase().split(',').join('').split('?').join('').split("'s").join(" 's"));
  s = pyStrip(s.split('\n').join(' ').split('\t').join(' '));
  return processDigitArticle(processPunctuation(s));
}

/**
 * The VQA accuracy of `pred` against the human answers (10 in VQAv2 / TextVQA / VizWiz), after EvalAI processing of
 * both: for each human, min(1, matching others / 3), averaged over the humans.
 */
export function vqaSoftAccuracy(pred: string, answers: readonly string[]): number {
  if (answers.length === 0) return 0;
  const p = evalAIAnswer(pred);
  const gt = answers.map(evalAIAnswer);
  const same = gt.filter((a) => a === p).length;
  let total = 0;
  for (const a of gt) total += Math.min(1, (same - (a === p ? 1 : 0)) / 3);
  return total / gt.length;
}
