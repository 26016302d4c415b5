"""A tiny SentencePiece BPE tokenizer.model and what transformers makes of it, for src/data/sentencepiece.ts
(tests/data/sentencepiece.test.ts). sentencepiece, protobuf and transformers from the local package index.

  python3 scripts/make_sentencepiece_fixture.py     # deterministic; writes tests/fixtures/sentencepiece/

- tokenizer.model: trained on a small corpus of Vicuna-template conversations (with the <image> placeholder, digits,
  accents, CJK and emoji) as LLaMA's is: BPE, byte fallback, split digits, identity normalization, dummy prefix.
- <variant>/tokenizer_config.json and <variant>/tokenizer.json for variants legacy / non-legacy (transformers'
  LlamaTokenizer.from_pretrained of the directory holding only tokenizer.model and tokenizer_config.json, then
  backend_tokenizer.to_str()).
- expected.json: per variant, the ids transformers gives for every line of the probe texts (with the BOS it adds).

And tests/fixtures/sentencepiece_mistral/ (tests/data/sentencepiece.test.ts): a Mistral-like tokenizer.model (the
same settings, plus the control pieces [INST] / [/INST] and a user-defined <image> piece) with tokenizer_config.json
variants that name other tokens: <variant>/tokenizer_config.json and transformers' <variant>/tokenizer.json as above,
expected.json: per variant, len(tokenizer), the bos / eos / unk ids, whether tok(text) starts with BOS, and per probe
text tok(text).input_ids with their decode (skip_special_tokens False and True), and the decode of runs of byte tokens.
"""
import json
import os
import shutil

import sentencepiece as spm
from transformers import AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'sentencepiece')
SYSTEM = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions."
LINES = [
    f"{SYSTEM} USER: <image>\nWhat is the colour of the big square? ASSISTANT: red</s>",
    f"{SYSTEM} USER: <image>\nHow many objects are there? ASSISTANT: 3</s>USER: Is it left of the circle? ASSISTANT: no</s>",
    "There are 12 objects: a red circle, a green square and a blue one.",
    "ça coûte 5€ — naïve café 東京 🙂  two  spaces\ttab",
]
PROBES = LINES + ["", " ", "  leading spaces", "USER:<image>ASSISTANT:", "unseen Zürich ÆØÅ 123456789", "</s><s><unk> specials inline"]




def train_model(out, lines, **extra):
    """out/tokenizer.model: SentencePiece BPE as LLaMA's (byte fallback, split digits, identity normalization, dummy
    prefix), trained on `lines` repeated; extra: more trainer options (control / user-defined symbols)."""
    corpus = os.path.join(out, 'corpus.tmp')
    with open(corpus, 'w') as f:
        f.write('\n'.join(lines * 40))
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(out, 'tokenizer'), vocab_size=420, model_type='bpe',
                                   byte_fallback=True, character_coverage=0.9995, split_digits=True, normalization_rule_name='identity',
                                   remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
                                   bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2, num_threads=1, **extra)
    os.remove(corpus)
    os.remove(os.path.join(out, 'tokenizer.vocab'))

def transformers_tokenizer(out, variant, cfg, exist_ok=False):
    """out/variant/: cfg as tokenizer_config.json and the tokenizer.json transformers builds from out/tokenizer.model
    beside it (the model copied in for the load, then removed); returns the transformers tokenizer."""
    d = os.path.join(out, variant)
    os.makedirs(d, exist_ok=exist_ok)
    with open(os.path.join(d, 'tokenizer_config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(os.path.join(out, 'tokenizer.model'), os.path.join(d, 'tokenizer.model'))
    tok = AutoTokenizer.from_pretrained(d)
    os.remove(os.path.join(d, 'tokenizer.model'))
    with open(os.path.join(d, 'tokenizer.json'), 'w') as f:
        f.write(tok.backend_tokenizer.to_str(pretty=True))
    return tok

def main():
    os.makedirs(OUT, exist_ok=True)
    train_model(OUT, LINES)
    expected = {}
    for variant, legacy in [('legacy', True), ('non_legacy', False)]:
        cfg = {'tokenizer_class': 'LlamaTokenizer', 'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>',
               'add_bos_token': True, 'add_eos_token': False, 'legacy': legacy}
        tok = transformers_tokenizer(OUT, variant, cfg, exist_ok=True)
        expected[variant] = [{'text': t, 'ids': tok(t).input_ids} for t in PROBES]
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


MISTRAL_OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'sentencepiece_mistral')
MISTRAL_LINES = [
    "[INST] <image>\nWhat is the colour of the big square? [/INST] red </s>[INST] and the other? [/INST] blue </s>",
    "[INST] How many objects are there? [/INST] 3 </s>",
    "There are 12 objects: a red circle, a green square and a blue one.",
    "ça coûte 5€ — naïve café 東京 🙂  two  spaces\ttab",
]
MISTRAL_PROBES = ["[INST] <image>\nWhat is it? [/INST] A red square. </s>", "[INST] q [/INST]<im_end>", "[INST]q[/INST]a",
                  "x <image> y", "<s>a</s><unk>", "hi", "x\ufeffy", "\ufeff\ufeff"]
# runs of byte tokens to decode (U+FEFF's bytes, an incomplete sequence, a valid one cut by a bad byte, bytes between text)
MISTRAL_BYTE_RUNS = [[0xEF, 0xBB, 0xBF], [0xE6, 0x97], [0xC3, 0xA9, 0xFF], [0xC3, 0xA9], ['\u2581a', 0xE6, '\u2581a', 0x97], [0xED, 0xA0, 0x80]]
MISTRAL_BASE = {'tokenizer_class': 'LlamaTokenizer', 'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>',
                'add_bos_token': True, 'add_eos_token': False, 'legacy': False}
SPECIAL = {'special': True, 'normalized': False, 'lstrip': False, 'rstrip': False, 'single_word': False}
MISTRAL_VARIANTS = {
    'base': MISTRAL_BASE,
    # another EOS (generation stops there)
    'eos_inst': dict(MISTRAL_BASE, eos_token='[/INST]'),
    # a config that lists additional_special_tokens: transformers then adds none of the control / user-defined pieces
    'extra_specials': dict(MISTRAL_BASE, pad_token='<unk>', additional_special_tokens=['<image>', '<im_end>']),
    'decoder_extra': dict(MISTRAL_BASE, additional_special_tokens=['<im_end>'], added_tokens_decoder={
        '0': dict(SPECIAL, content='<unk>'), '1': dict(SPECIAL, content='<s>'), '2': dict(SPECIAL, content='</s>')}),
    'empty_extra': dict(MISTRAL_BASE, additional_special_tokens=[]),
    # a model-specific named token: special, though the piece is user-defined
    'image_token': dict(MISTRAL_BASE, image_token='<image>'),
    'no_bos': dict(MISTRAL_BASE, add_bos_token=False),
}


def mistral():
    shutil.rmtree(MISTRAL_OUT, ignore_errors=True)
    os.makedirs(MISTRAL_OUT)
    train_model(MISTRAL_OUT, MISTRAL_LINES, control_symbols=['[INST]', '[/INST]'], user_defined_symbols=['<image>'])
    expected = {}
    for variant, cfg in MISTRAL_VARIANTS.items():
        tok = transformers_tokenizer(MISTRAL_OUT, variant, cfg)
        probes = []
        for t in MISTRAL_PROBES:
            ids = tok(t).input_ids
            probes.append({'text': t, 'ids': ids, 'decode': tok.decode(ids), 'decode_skip': tok.decode(ids, skip_special_tokens=True)})
        vocab = tok.get_vocab()
        runs = []
        for run in MISTRAL_BYTE_RUNS:
            ids = [vocab['<0x%02X>' % b] if isinstance(b, int) else vocab[b] for b in run]
            runs.append({'ids': ids, 'decode': tok.decode(ids)})
        expected[variant] = {'len': len(tok), 'bos_id': tok.bos_token_id, 'eos_id': tok.eos_token_id, 'unk_id': tok.unk_token_id,
                             'adds_bos': tok('x').input_ids[0] == tok.bos_token_id, 'probes': probes, 'byte_runs': runs}
    with open(os.path.join(MISTRAL_OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == '__main__':
    main()
    mistral()
