#!/usr/bin/env python3
"""Fixtures for tests/data/llava_train_prompts.test.ts: LLaVA's training prompts, input ids and labels, made by LLaVA's
own preprocess_multimodal + preprocess (llava/train/train.py, run as is) on conversations written here.

  python3 scripts/make_train_prompt_fixtures.py --llava DIR [--out tests/fixtures/train_prompts/expected.json]

DIR is a checkout of github.com/haotian-liu/LLaVA (commit c121f04 was used). train.py is loaded by path with its model
and trainer imports stubbed (scripts/llava_stub.py; nothing of the model is imported); conversation_lib's
default_conversation is set per version, as train() sets it from --version. Each conversation is run with the legacy
and the non-legacy Llama fixture tokenizers (tests/fixtures/sentencepiece), pad = unk as train() sets it for v1,
model_max_length 2048 as LLaVA-1.5 trains.

Written: {"cases": [{version, conversations, variants: {legacy|non_legacy: {input_ids, labels, mismatch}}}]}, where
mismatch says LLaVA printed "tokenization mismatch" (then it masked every label) and prompt is conv.get_prompt().
Needs torch (CPU), transformers, tokenizers, packaging, Pillow.
"""
import argparse
import contextlib
import copy
import io
import json
import os
import sys
import types

import llava_stub
from llava_stub import ROOT


def turns(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


# (versions, conversations): LLaVA-1.5 stage 2 (v1) runs every template of the TWO style; plain takes (image, caption)
TWO = ["v1", "llava_v1", "v1_mmtag"]
CASES = [
    (TWO, turns("<image>\nWhat is in the image?", "A red square.")),
    (TWO, turns("What color is it?\n<image>", "Red.", "And the shape?", "A square, with 4 corners.")),
    (TWO, turns("<image>\nFirst question?", "", "Second question?", "Second answer.")),  # an empty reply mid-way
    (TWO, turns("<image>\nA question with no answer yet?", "")),  # ... and last: LLaVA's round split finds no reply
    (TWO, turns("<image>\nQ1?", "A1.", "Q2, never answered?")),  # ends with a human turn
    (TWO, turns("<image>\nQuote the role?", "It reads ASSISTANT: here.", "And then?", "Done.")),  # the role text in a reply
    (TWO, turns("<image>\nEnd of text?", "It is </s> written out.", "Again?", "Yes.")),  # sep2 in a reply
    (TWO, turns("Text only: 12 + 7?", "19")),
    (TWO, turns("<image>\nCaf\u00e9, \u6771\u4eac, emoji \U0001F642?", "Unicode:  two spaces,\ttab\nand a newline.")),
    (TWO, [{"from": "gpt", "value": "A leading reply is dropped."}] + turns("<image>\nWhy?", "Because.")),
    (["plain"], turns("<image>\nThe human text is dropped.", "a red square left top")),
    (["plain"], turns("Describe <image>", "two dots , one line")),
]


def install_train(llava):
    """llava.train.train loaded by path, its model / trainer imports stubbed; returns (train module, conversation_lib)."""
    llava_stub.install(llava)
    pkg = sys.modules["llava"]
    pkg.conversation = sys.modules["llava.conversation"]
    pkg.mm_utils = sys.modules["llava.mm_utils"]
    sys.modules["llava.train"] = types.ModuleType("llava.train")
    sys.modules["llava.train"].__path__ = []
    trainer = types.ModuleType("llava.train.llava_trainer")
    trainer.LLaVATrainer = None
    sys.modules["llava.train.llava_trainer"] = trainer
    model = sys.modules["llava.model"]
    model.__all__ = []
    train = llava_stub.load(os.path.join(llava, "llava", "train", "train.py"), "llava.train.train")
    return train, sys.modules["llava.conversation"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a LLaVA checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "train_prompts", "expected.json"))
    a = ap.parse_args()
    train, conv_lib = install_train(a.llava)
    toks = llava_stub.tokenizers()
    for t in toks.values():
        t.pad_token = t.unk_token  # train(): LLaVA-1.5 (v1) pads with unk
        t.model_max_length = 2048  # LLaVA-1.5's --model_max_length
    data_args = types.SimpleNamespace(is_multimodal=True, mm_use_im_start_end=False)
    out = {"llava_commit": "c121f04", "cases": []}
    for versions, conversations in CASES:
        for version in versions:
            conv_lib.default_conversation = conv_lib.conv_templates[version]
            case = {"version": version, "conversations": conversations, "variants": {}}
            for variant, tok in toks.items():
                sources = train.preprocess_multimodal(copy.deepcopy([conversations]), data_args)
                has_image = any("<image>" in s["value"] for s in conversations)
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    d = train.preprocess(sources, tok, has_image=has_image)
                ids, labels = d["input_ids"][0], d["labels"][0]
                case["variants"][variant] = {"input_ids": ids.tolist(), "labels": labels.tolist(),
                                             "mismatch": "tokenization mismatch" in printed.getvalue()}
            out["cases"].append(case)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print("wrote", os.path.abspath(a.out), len(out["cases"]), "cases")


if __name__ == "__main__":
    main()
