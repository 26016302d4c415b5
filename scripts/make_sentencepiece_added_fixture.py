"""Added tokens on a SentencePiece tokenizer.model, as transformers' LlamaTokenizer adds them, for src/data/sentencepiece.ts
(tests/model/sentencepiece_added.test.ts). transformers from the local package index (5.18).

  python3 scripts/make_sentencepiece_added_fixture.py     # deterministic; writes tests/fixtures/sentencepiece_added/

Uses tests/fixtures/sentencepiece/tokenizer.model (420 pieces). Per variant, <variant>/tokenizer_config.json and, where
the variant has one, <variant>/added_tokens.json (the files of the checkpoint directory beside tokenizer.model), and
<variant>/tokenizer.json: transformers' AutoTokenizer.from_pretrained of that directory, backend_tokenizer.to_str().
expected.json: per variant, len(tokenizer) and the ids it gives for every probe text.
Variants: an added_tokens.json as LLaVA v0-style checkpoints carry (<im_start>, <im_end>, <im_patch>); one that lists
a piece and a named special token, with indices out of order and a gap; an added_tokens_decoder in the config (which
makes transformers ignore added_tokens.json) with flags; named special tokens that are not pieces (pad, mask,
additional_special_tokens).
"""
import json
import os
import shutil

from transformers import AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')
MODEL = os.path.join(ROOT, 'sentencepiece', 'tokenizer.model')
OUT = os.path.join(ROOT, 'sentencepiece_added')
BASE = {'tokenizer_class': 'LlamaTokenizer', 'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>',
        'add_bos_token': True, 'add_eos_token': False, 'legacy': False}
PROBES = [
    "A chat. USER: <im_start><image><im_end>\nWhat is 12? ASSISTANT: red</s>",
    "x<im_start>y <im_patch> z <im_end>",
    " <pad> <mask><extra_0> a<s>b ",
    "USER:<image>ASSISTANT: ü 日本 😀",
    "",
]
DEC = lambda content, special, normalized, lstrip=False, rstrip=False: {
    'content': content, 'lstrip': lstrip, 'normalized': normalized, 'rstrip': rstrip, 'single_word': False, 'special': special}
VARIANTS = {
    'llava_v0': (BASE, {'<im_patch>': 420, '<im_start>': 421, '<im_end>': 422}),
    'out_of_order': (dict(BASE, additional_special_tokens=['<im_end>']),
                     {'<im_end>': 424, '<im_start>': 420, '\u2581a': 421, '<s>': 1, '<image>': 430}),
    'decoder': (dict(BASE, added_tokens_decoder={
        '0': DEC('<unk>', True, False), '1': DEC('<s>', True, False), '2': DEC('</s>', True, False),
        '420': DEC('<im_start>', True, False, lstrip=True), '421': DEC('<image>', False, True, rstrip=True)}),
        {'<im_end>': 422}),
    'named_specials': (dict(BASE, pad_token='<pad>', mask_token={'__type': 'AddedToken', 'content': '<mask>', 'lstrip': True, 'normalized': False,
                                                               'rstrip': False, 'single_word': False, 'special': True},
                            additional_special_tokens=['<extra_0>', '<unk>']),
                       {'<im_start>': 420}),
}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    expected = {}
    for name, (cfg, added) in VARIANTS.items():
        d = os.path.join(OUT, name)
        os.makedirs(d)
        with open(os.path.join(d, 'tokenizer_config.json'), 'w') as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)
        if added is not None:
            with open(os.path.join(d, 'added_tokens.json'), 'w') as f:
                json.dump(added, f, indent=2, ensure_ascii=False)
        shutil.copy(MODEL, os.path.join(d, 'tokenizer.model'))
        tok = AutoTokenizer.from_pretrained(d)
        os.remove(os.path.join(d, 'tokenizer.model'))
        with open(os.path.join(d, 'tokenizer.json'), 'w') as f:
            f.write(tok.backend_tokenizer.to_str(pretty=True))
        expected[name] = {'len': len(tok), 'probes': [{'text': t, 'ids': tok(t).input_ids} for t in PROBES]}
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == '__main__':
    main()
