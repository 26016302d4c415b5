"""BPE tokenizer.json files and the ids the Rust `tokenizers` library gives for them, for src/data/bpe.ts
(tests/data/bpe.test.ts). Only `tokenizers` (Rust, from the local package index) is needed.

  python3 scripts/make_bpe_fixture.py     # deterministic; writes tests/fixtures/bpe/

- handmade/<name>.json: small BPE models written by hand, each aimed at one of Rust's rules (unknown characters
  between mergeable pairs, fused and unfused unknowns, byte fallback with some byte pieces missing, no unk token,
  continuing-subword prefix and end-of-word suffix, ignore_merges, a pair listed twice, an added token that is one
  character the model lacks);
- trained.json: a BPE trained by tokenizers' BpeTrainer on a small corpus (Whitespace pre-tokenizer, no byte
  fallback, unk "[UNK]"), so probes carry many characters it never saw;
- expected.json: {name: [{text, ids}]} from Tokenizer.from_str(...).encode(text, add_special_tokens=False).
"""
import json
import os
import random
import shutil

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'bpe')


def model_json(vocab, merges, **extra):
    model = {'type': 'BPE', 'dropout': None, 'unk_token': '<unk>', 'continuing_subword_prefix': None,
             'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
             'vocab': {t: i for i, t in enumerate(vocab)}, 'merges': [list(m) for m in merges]}
    model.update(extra)
    return model


def tokenizer_json(model, pre_tokenizer=None, added=()):
    return {'version': '1.0', 'truncation': None, 'padding': None,
            'added_tokens': [{'id': i, 'content': c, 'single_word': False, 'lstrip': False, 'rstrip': False,
                              'normalized': False, 'special': False} for i, c in added],
            'normalizer': None, 'pre_tokenizer': pre_tokenizer, 'post_processor': None, 'decoder': None, 'model': model}


WS = {'type': 'WhitespaceSplit'}
BASE = ['<unk>', 'a', 'b', 'c', 'd', 'ab', 'bc', 'cd', 'abc', 'bcd', 'abcd']
BASE_MERGES = [('a', 'b'), ('b', 'c'), ('c', 'd'), ('ab', 'c'), ('b', 'cd'), ('abc', 'd')]
BYTES = ['<0x%02X>' % b for b in range(256)]
HANDMADE = {
    # unknown characters (x, y, é, 東) between and around mergeable pairs; unfused, then fused
    'unk': tokenizer_json(model_json(BASE, BASE_MERGES), WS),
    'unk_fused': tokenizer_json(model_json(BASE, BASE_MERGES, fuse_unk=True), WS),
    # byte fallback where only the pieces of 'é' exist: '東' has no pieces, so it is an unknown
    'bytes_partial': tokenizer_json(model_json(BASE + ['<0xC3>', '<0xA9>'], BASE_MERGES, byte_fallback=True), WS),
    'bytes_partial_fused': tokenizer_json(model_json(BASE + ['<0xC3>', '<0xA9>'], BASE_MERGES, byte_fallback=True, fuse_unk=True), WS),
    # every byte piece, and merges between byte pieces
    'bytes_all': tokenizer_json(model_json(BASE + BYTES + ['<0xC3><0xA9>'], BASE_MERGES + [('<0xC3>', '<0xA9>')], byte_fallback=True), WS),
    # no unk token: unknown characters are dropped
    'no_unk': tokenizer_json(model_json(BASE[1:], BASE_MERGES, unk_token=None), WS),
    # WordPiece-like prefixes and suffixes: '##' on every character but the first, '</w>' on the last
    'affixes': tokenizer_json(model_json(
        ['<unk>', 'a', 'b', 'c', '##a', '##b', '##c', 'a</w>', 'b</w>', 'c</w>', '##a</w>', '##b</w>', '##c</w>',
         'ab', '##bc</w>', 'abc</w>', 'ab</w>'],
        [('a', '##b'), ('##b', '##c</w>'), ('ab', '##c</w>'), ('a', '##b</w>')],
        continuing_subword_prefix='##', end_of_word_suffix='</w>'), WS),
    # ignore_merges: a word in the vocabulary is one token even where merges would not build it
    'ignore_merges': tokenizer_json(model_json(BASE + ['dcba'], BASE_MERGES, ignore_merges=True), WS),
    # the pair (a, b) listed twice, the second time after (b, c): its later rank is the one that counts
    'duplicate_merge': tokenizer_json(model_json(BASE, [('a', 'b'), ('b', 'c'), ('a', 'b'), ('c', 'd'), ('ab', 'c'), ('b', 'cd'), ('abc', 'd')]), WS),
    # no pre-tokenizer: the whole text is one word (as LLaMA's legacy tokenizer.json), with spaces unknown
    'one_word': tokenizer_json(model_json(BASE + ['\u2581', '\u2581a'], BASE_MERGES + [('\u2581', 'a')])),
    # an added token that is one character the model lacks ('x'): the model still never sees it
    'added_char': tokenizer_json(model_json(BASE, BASE_MERGES), WS, added=[(11, 'x')]),
}
HANDMADE_PROBES = ['abcd', 'abxcd', 'axbc', 'xyabcd', 'abcdxy', 'xy', 'axxb', 'a\u00e9b', '\u00e9\u00e9', 'a\u6771b',
                   '\u6771\u00e9\u6771', 'dcba', 'ab cd abc', 'bcbcbc', 'abc d', 'a b c', 'x', 'xabcx ab', 'abcabcab',
                   'cab', 'ca', 'bca', 'a x b', '']

CORPUS = [
    'the cat sat on the mat', 'a red square is left of the blue circle', 'what colour is the big square',
    'how many objects are there in the picture', 'there are three objects near the table',
    'the answer is yes', 'the answer is no', 'describe the image in detail',
]


def trained():
    tok = Tokenizer(models.BPE(unk_token='[UNK]'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(vocab_size=120, special_tokens=['[UNK]'], show_progress=False))
    return json.loads(tok.to_str())


def trained_probes():
    rng = random.Random(7)
    alphabet = 'abcdefghijklmnopqrstuvwxyz' * 3 + 'QZ\u00e9\u6771!?0'
    probes = list(CORPUS) + ['Zebras quickly jumped!', 'caf\u00e9 \u6771\u4eac 42', 'thethethe catcat', 'xyzzy quux']
    for _ in range(40):
        words = [''.join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 6))]
        probes.append(' '.join(words))
    return probes


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, 'handmade'))
    expected = {}
    for name, tj in HANDMADE.items():
        path = os.path.join(OUT, 'handmade', name + '.json')
        with open(path, 'w') as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_str(json.dumps(tj))
        expected[name] = [{'text': t, 'ids': tok.encode(t, add_special_tokens=False).ids} for t in HANDMADE_PROBES]
    tj = trained()
    with open(os.path.join(OUT, 'trained.json'), 'w') as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_str(json.dumps(tj))
    expected['trained'] = [{'text': t, 'ids': tok.encode(t, add_special_tokens=False).ids} for t in trained_probes()]
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == '__main__':
    main()
