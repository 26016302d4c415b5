#!/usr/bin/env python3
"""Fixtures for tests/eval/llava_prompts.test.ts: the prompts of LLaVA's eval loaders, run as is on question files made here.

  python3 scripts/make_prompt_fixtures.py --llava DIR [--out tests/fixtures/eval/prompts]

DIR is a checkout of github.com/haotian-liu/LLaVA (commit c121f04 was used). Its llava/eval/model_vqa_loader.py,
model_vqa.py and model_vqa_science.py run unchanged as scripts (`python -m llava.eval.<name> --conv-mode ...`, their
`__main__` part included) with a stub model (scripts/llava_stub.py): every prompt they build is recorded, with the input
ids generate() gets. Each run is made twice, with the legacy and the non-legacy Llama fixture tokenizer
(tests/fixtures/sentencepiece). Needs torch (CPU), transformers, Pillow, tqdm.

Written (all under --out):
  questions.jsonl   model_vqa_loader / model_vqa questions: LLaVA-1.5's short-answer suffix, spaces at both ends,
                    newlines, tabs and CR, unicode (accents, CJK, emoji, non-breaking and ideographic spaces), "<image>"
                    already in the text, empty and blank questions, digits and "</s>" / "<s>" written in the text, string
                    and number ids; the second half with CRLF line ends
  sqa.json          model_vqa_science records: with and without an image, "<image>" first, last, twice and in text-only
                    records, Python-whitespace at both ends (\\u3000, \\x1f, \\x85; \\ufeff is not), more than two turns
  images/           the two images they name (tiny PNG and JPEG)
  expected.json     per run (script, --conv-mode, --single-pred-prompt, chunks): the answer lines LLaVA wrote (answer_id
                    and text left out), the full prompt of each question and the image size generate() got (null: no
                    image); `ids`: per prompt, the input ids generate() got with each tokenizer
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile

from PIL import Image

import llava_stub
from llava_stub import ROOT

SHORT = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's suffix for short-answer benchmarks
# (question_id, image, text)
QUESTIONS = [
    (1, "red.png", "What color is the square?" + SHORT),
    ("q-2", "dots.jpg", "  How many dots are there?  " + SHORT),
    (3, "dots.jpg", "First line\nsecond line\n\nafter a blank line\n"),
    (4, "red.png", "\tTabbed\tquestion\r\nwith CRLF and a lone CR\r"),
    (5, "dots.jpg", "Qu'est-ce que c'est ? Zürich, 東京, naïve, emoji 🙂" + SHORT),
    (6, "red.png", "<image>\nThe image is already in the text. What is it?"),
    (7, "dots.jpg", "What is shown in <image> and around it?" + SHORT),
    (8, "red.png", ""),
    (9, "dots.jpg", "   "),
    (10, "red.png", "Numbers 12345 and 3.14, then </s> and <s> written inline?"),
    ("11", "dots.jpg", "\u00a0non-breaking spaces\u00a0and an ideographic one\u3000"),
    (12, "red.png", "Describe this image in detail."),  # MM-Vet / LLaVA-Bench: no suffix
    (13, "dots.jpg", "Is there a dog in the image?" + SHORT + "\n"),
]


def turns(q, a="A"):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


SQA = [
    {"id": "4", "image": "red.png", "conversations": turns("<image>\nContext: A square.\nWhich color is it?\nA. red\nB. blue")},
    {"id": "7", "conversations": turns("Context: N/A\nWhich word comes first in alphabetical order?\nA. ant\nB. bee")},
    {"id": "9", "image": "dots.jpg", "conversations": turns("Question: How many dots?\nOptions: (A) one (B) two (C) three\n<image>", "C")},
    {"id": "11", "conversations": turns("  <image>A text-only record with a stray <image> tag, twice.  ")},
    {"id": 12, "image": "red.png", "conversations": turns("\u3000\x1f Unicode: café, 東京 🙂 \x85\u2028")},
    {"id": "13", "image": "dots.jpg", "conversations": turns("\ufeffA BOM is not Python whitespace\r\nCRLF\n\nand a blank line\n") + turns("A second question?")},
    {"id": "14", "conversations": turns(" \n\t ")},
    {"id": "15", "image": "red.png", "conversations": turns("<image>")},
    {"id": "16", "image": "dots.jpg", "conversations": turns("Which is larger, 12 or 7?\n<image>\nA. 12\nB. 7<image>")},
]

LOADER, VQA, SCIENCE = "model_vqa_loader.py", "model_vqa.py", "model_vqa_science.py"
RUNS = [
    # name, script, question file, --conv-mode, other arguments
    ("loader_vicuna_v1", LOADER, "questions.jsonl", "vicuna_v1", []),  # LLaVA-1.5's scripts/v1_5/eval/{textvqa,pope,vqav2,gqa,...}.sh
    ("loader_v1_chunk", LOADER, "questions.jsonl", "v1", ["--num-chunks", "3", "--chunk-idx", "1"]),
    ("loader_mistral_instruct", LOADER, "questions.jsonl", "mistral_instruct", []),
    ("loader_llava_v1", LOADER, "questions.jsonl", "llava_v1", []),
    ("loader_v1_mmtag", LOADER, "questions.jsonl", "v1_mmtag", []),  # the system prompt differs; the loader does not wrap the image
    ("loader_plain", LOADER, "questions.jsonl", "plain", []),
    ("vqa_vicuna_v1", VQA, "questions.jsonl", "vicuna_v1", []),  # mmvet.sh, llavabench.sh
    ("science_vicuna_v1_single", SCIENCE, "sqa.json", "vicuna_v1", ["--single-pred-prompt"]),  # sqa.sh
    ("science_vicuna_v1", SCIENCE, "sqa.json", "vicuna_v1", []),
    ("science_mistral_instruct_chunk", SCIENCE, "sqa.json", "mistral_instruct", ["--single-pred-prompt", "--num-chunks", "2", "--chunk-idx", "1"]),
    ("science_plain", SCIENCE, "sqa.json", "plain", []),
    ("science_v1_mmtag_single", SCIENCE, "sqa.json", "v1_mmtag", ["--single-pred-prompt"]),
    ("science_plain_single", SCIENCE, "sqa.json", "plain", ["--single-pred-prompt"]),
]


def write_inputs(out):
    rng = random.Random(0)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for name, size, fmt in [("red.png", (4, 3), "PNG"), ("dots.jpg", (5, 7), "JPEG")]:
        img = Image.new("RGB", size)
        img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
        img.save(os.path.join(out, "images", name), format=fmt)
    lines = [json.dumps({"question_id": i, "image": im, "text": t, "category": "fixture"}, ensure_ascii=False) for i, im, t in QUESTIONS]
    half = len(lines) // 2
    with open(os.path.join(out, "questions.jsonl"), "w", newline="") as f:
        f.write("".join(l + "\n" for l in lines[:half]) + "".join(l + "\r\n" for l in lines[half:]))
    with open(os.path.join(out, "sqa.json"), "w") as f:
        json.dump(SQA, f, ensure_ascii=False, indent=1)


def run(llava, out, work, script, questions, conv, extra, tokenizer):
    """The script as LLaVA-1.5's eval scripts call it, with the stub model; its answer lines and records."""
    answers = os.path.join(work, "answers.jsonl")
    argv = ["--model-path", "/models/llava-fixture", "--question-file", os.path.join(out, questions), "--image-folder", os.path.join(out, "images"),
            "--answers-file", answers, "--conv-mode", conv, "--temperature", "0"] + extra
    model = llava_stub.StubModel(tokenizer, ["A"] * 100)
    with llava_stub.stubbed(model, sys.modules["llava.mm_utils"], sys.modules["llava.model.builder"]):
        llava_stub.run_main(os.path.join(llava, "llava", "eval", script), argv)
    lines = [json.loads(l) for l in open(answers)]
    assert len(lines) == len(model.records)
    for l in lines:
        del l["answer_id"], l["text"]  # random; the stub's answer
    return lines, model.records


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a LLaVA checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "eval", "prompts"))
    a = ap.parse_args()
    llava_stub.install(a.llava)
    toks = llava_stub.tokenizers()
    write_inputs(a.out)
    expected = {"runs": [], "ids": {}}
    work = tempfile.mkdtemp()
    try:
        for name, script, questions, conv, extra in RUNS:
            by_variant = {v: run(a.llava, a.out, work, script, questions, conv, extra, t) for v, t in toks.items()}
            lines, recs = by_variant["non_legacy"]
            for v, (l, r) in by_variant.items():  # the tokenizer changes the ids only
                assert l == lines and [x["prompt"] for x in r] == [x["prompt"] for x in recs], (name, v)
                for x in r:
                    expected["ids"].setdefault(x["prompt"], {})[v] = x["input_ids"]
            chunks = [int(extra[extra.index(k) + 1]) if k in extra else d for k, d in [("--num-chunks", 1), ("--chunk-idx", 0)]]
            expected["runs"].append({"name": name, "script": f"llava/eval/{script}", "questions": questions, "conv_mode": conv,
                                     "single_pred_prompt": "--single-pred-prompt" in extra, "num_chunks": chunks[0], "chunk_idx": chunks[1],
                                     "lines": lines, "prompts": [r["prompt"] for r in recs], "image_sizes": [r["image_size"] for r in recs]})
        with open(os.path.join(a.out, "expected.json"), "w") as f:
            json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
    finally:
        shutil.rmtree(work)
    print("wrote", os.path.abspath(a.out))


if __name__ == "__main__":
    main()
