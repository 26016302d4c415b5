#!/usr/bin/env python3
"""Fixtures for tests/eval/mmbench.test.ts: LLaVA-1.5's MMBench pipeline run as is on small MMBench TSVs made here.

  python3 scripts/make_mmbench_fixtures.py --llava DIR [--out tests/fixtures/eval/mmbench]

DIR is a checkout of github.com/haotian-liu/LLaVA (commit c121f04 was used). Its llava/eval/model_vqa_mmbench.py runs
unchanged (its eval_model) with a stub model (scripts/llava_stub.py) whose tokenizer is the Llama fixture tokenizer
(tests/fixtures/sentencepiece/non_legacy) and whose generate() answers a fixed letter. scripts/
convert_mmbench_for_submission.py then runs as a script on the answers. Needs torch (CPU), transformers, pandas,
openpyxl and Pillow.

Written (all under --out):
  en.tsv, cn.tsv    MMBench TSVs (dev layout; en.tsv adds float, int-with-gaps and bool columns): rows with and without
                    a hint, 1-4 options (pandas' missing values, "none", an option after a gap), quoted fields with
                    tabs, newlines and doubled quotes, CRLF and blank lines, spaces kept at both ends, Chinese text,
                    tiny PNG / JPEG images in base64
  expected.json     "%.16g" of floats (openpyxl's number text); per run of eval_model (lang, --single-pred-prompt, --all-rounds, --conv-mode, chunks): the answer
                    lines it wrote (answer_id left out: random), the full prompt of each, the decoded image's size, and
                    for round 0 of the runs marked `ids` the input ids of tokenizer_image_token with the legacy and
                    non-legacy fixture tokenizers (by prompt)
  <name>_answers.jsonl, <name>_expected.xlsx   answers (LLaVA's lines plus hand-made ones: repeated ids, ids not in the
                    TSV, float and bool ids, formulas, spaces, CR) and the upload file the script wrote for them
  <name>_expected_cells.json   the cells of that xlsx as openpyxl reads them: [type, value] per cell, row by row
"""
import argparse
import base64
import io
import json
import os
import random
import shutil
import tempfile
import types

from PIL import Image

import llava_stub
from llava_stub import ROOT

COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category", "comment", "split"]


def image_b64(rng, fmt):
    w, h = rng.randint(2, 7), rng.randint(2, 7)
    img = Image.new("RGB", (w, h))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(w * h)])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def tsv_field(v):
    """A field as written: quoted (doubled quotes) when it holds a tab, newline or a leading quote."""
    if v is None:
        return ""
    if any(c in v for c in "\t\n\r") or v.startswith('"'):
        return '"' + v.replace('"', '""') + '"'
    return v


# (index, question, hint, [A, B, C, D], answer, raw) -- raw: fields written as they are (quoting tested on purpose)
EN_ROWS = [
    (1000, "What animal is shown?", "The picture was taken at a farm.", ["cat", "dog", "cow", "horse"], "C", {}),
    (1001, "Which number is larger?", None, ["3", "12", None, None], "B", {}),
    (1005, 'He said "hi" to whom?', "None", ["the teacher", "the pupil", "NA", "the parent"], "A", {}),
    (1007, "First line\nsecond line\twith a tab", "  spaces kept at both ends  ", ["left", "right", "up", None], "B", {}),
    (1012, "Quoted", "nan", ["=1+1", "-", "none", "x"], "A", {"question": '"Quoted" then more'}),
    (1020, "Trailing spaces?  ", "N/A", ["yes", "no", "maybe", "  padded  "], "D", {}),
    (1033, "Accents: café, naïve; emoji 🙂?", "Hint with a \"quote\" inside", ["Zürich", "東京", "1.5", "x\r\ny"], "A", {}),
    (1034, "One option only?", "", ["only", None, "dropped after a gap", None], "A", {}),
]
CN_ROWS = [
    (0, "图中是什么动物？", "这张照片是在农场拍的。", ["猫", "狗", "牛", "马"], "C", {}),
    (1, "哪个数字更大？", None, ["3", "12", None, None], "B", {}),
    (2, "下列哪一项正确？", None, ["左边", "右边", "上面", None], "A", {}),
    (3, "图片的主要颜色是什么？", "提示：注意背景。", ["红色", "绿色", "蓝色", "黄色"], "D", {}),
]


def write_tsv(path, rows, rng, extra):
    """MMBench's column layout; `extra` adds columns of floats, ints with gaps and bools (kept by the converter)."""
    cols = COLUMNS + (["score", "count", "flag"] if extra else [])
    lines = ["\t".join(cols)]
    scores = ["0.1", "2.5", "1e16", "", "inf", "0.3333333333333333", "12345678901234567", "-0"]
    for k, (idx, q, hint, opts, ans, raw) in enumerate(rows):
        vals = {"index": str(idx), "question": q, "hint": hint, "A": opts[0], "B": opts[1], "C": opts[2], "D": opts[3],
                "answer": ans, "category": "fixture", "image": image_b64(rng, "JPEG" if k % 3 == 2 else "PNG"),
                "source": "made", "l2-category": "cat-" + str(k % 2), "comment": None, "split": "dev",
                "score": scores[k % len(scores)], "count": None if k % 3 == 0 else str(k * 7), "flag": ["True", "false", "TRUE", ""][k % 4]}
        fields = [raw[c] if c in raw else tsv_field(vals[c]) for c in cols]
        lines.append("\t".join(fields))
    # CRLF endings on the second half, a blank line and a line of spaces (both skipped by pandas)
    half = len(lines) // 2
    text = "\n".join(lines[:half]) + "\n\n   \n" + "\r\n".join(lines[half:]) + "\r\n"
    with open(path, "w", newline="") as f:
        f.write(text)


def run_eval(mm, tsv, out, conv_mode, lang, single_pred, all_rounds, chunks, tokenizer, letters):
    """eval_model of model_vqa_mmbench.py on `tsv` with a stub model; returns its lines and records (prompt, image size)."""
    answers = os.path.join(out, "answers.jsonl")
    args = types.SimpleNamespace(model_path="/models/llava-fixture", model_base=None, question_file=tsv, answers_file=answers,
                                 conv_mode=conv_mode, num_chunks=chunks[0], chunk_idx=chunks[1], temperature=0, top_p=None,
                                 num_beams=1, all_rounds=all_rounds, single_pred_prompt=single_pred, lang=lang)
    with llava_stub.stubbed(llava_stub.StubModel(tokenizer, letters), mm) as model:
        mm.eval_model(args)
    lines = [json.loads(l) for l in open(answers)]
    assert len(lines) == len(model.records)
    return lines, model.records


def cells_of(xlsx):
    import openpyxl
    ws = openpyxl.load_workbook(xlsx).active
    return [[[c.data_type, c.value] for c in row] for row in ws.iter_rows()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a LLaVA checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "eval", "mmbench"))
    a = ap.parse_args()
    mm_utils = llava_stub.install(a.llava)
    mm = llava_stub.load(os.path.join(a.llava, "llava", "eval", "model_vqa_mmbench.py"), "llava.eval.model_vqa_mmbench")
    toks = llava_stub.tokenizers()

    rng = random.Random(0)
    os.makedirs(a.out, exist_ok=True)
    tsvs = {"en": os.path.join(a.out, "en.tsv"), "cn": os.path.join(a.out, "cn.tsv")}
    write_tsv(tsvs["en"], EN_ROWS, rng, extra=True)
    write_tsv(tsvs["cn"], CN_ROWS, rng, extra=False)

    runs = [
        # name, tsv, conv_mode, lang, single_pred, all_rounds, (num_chunks, chunk_idx), token ids
        ("en", "en", "vicuna_v1", "en", True, False, (1, 0), True),  # LLaVA-1.5's scripts/v1_5/eval/mmbench.sh
        ("en_rounds", "en", "vicuna_v1", "en", True, True, (1, 0), False),
        ("en_mistral_chunk", "en", "mistral_instruct", "en", False, True, (3, 1), False),
        ("cn", "cn", "vicuna_v1", "cn", True, True, (1, 0), True),  # mmbench_cn.sh, with all rounds
        ("cn_plain_question", "cn", "v1", "cn", False, False, (2, 1), False),
    ]
    expected = {"runs": [], "ids": {}}
    work = tempfile.mkdtemp()
    answers_of = {}
    try:
        for name, tsv, conv, lang, single, rounds, chunks, ids in runs:
            letters = [rng.choice("ABCD") for _ in range(64)]
            lines, recs = run_eval(mm, tsvs[tsv], work, conv, lang, single, rounds, chunks, toks["non_legacy"], letters)
            answers_of[name] = lines
            for l in lines:
                del l["answer_id"]
            expected["runs"].append({"name": name, "tsv": f"{tsv}.tsv", "conv_mode": conv, "lang": lang, "single_pred_prompt": single,
                                     "all_rounds": rounds, "num_chunks": chunks[0], "chunk_idx": chunks[1], "model_id": "llava-fixture",
                                     "lines": lines, "prompts": [r["prompt"] for r in recs], "image_sizes": [r["image_size"] for r in recs]})
            if ids:  # round 0 of each question: the rotations add no new tokenization
                for r, l in zip(recs, lines):
                    if l["round_id"] == 0:
                        expected["ids"][r["prompt"]] = {v: mm_utils.tokenizer_image_token(r["prompt"], t) for v, t in toks.items()}
        # openpyxl writes numbers as "%.16g" % x (exact ties to even; exponent forms; -0)
        floats = [0.0, -0.0, 1.0, 0.1, 1 / 3, 2.5, 1e16, 1e15, 123456789012345678.0, 1234567890123456.5, 1234567890123457.5,
                  9999999999999999.0, 0.0001, 0.00001, 1.5e-7, 5e-324, 1.7976931348623157e308, -12.5, 100.0, 1e-4 + 1e-20]
        floats += [rng.random() * 10 ** rng.randint(-8, 20) for _ in range(20)]
        expected["g16"] = [[x, "%.16g" % x] for x in floats]
        with open(os.path.join(a.out, "expected.json"), "w") as f:
            json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))

        # convert_mmbench_for_submission.py: later lines for an index overwrite earlier ones (all rounds: the last round)
        extra_en = [
            {"question_id": 1001, "text": "  spaces at both ends  "},
            {"question_id": 1005.0, "text": "=SUM(1, 2)"},  # a float id matches; a string starting with = is a formula
            {"question_id": "1007", "text": "a string id matches nothing"},
            {"question_id": 999, "text": "not in the TSV"},
            {"question_id": 1033, "text": "line one\r\nline two\ttab 東京 🙂"},
            {"question_id": 1012, "text": "nan"},
            {"question_id": 1020, "text": ""},
            {"question_id": True, "text": "True == 1: matches no index here"},
        ]
        for name, tsv, lines, extra in [("en", "en", answers_of["en_rounds"], extra_en), ("cn", "cn", answers_of["cn"], [{"question_id": 2, "text": "答案是 B"}])]:
            rdir, udir = os.path.join(work, "results"), os.path.join(work, "upload")
            os.makedirs(rdir, exist_ok=True)
            os.makedirs(udir, exist_ok=True)
            answers = os.path.join(a.out, f"{name}_answers.jsonl")
            with open(answers, "w") as f:
                for l in lines + extra:
                    f.write(json.dumps(l) + "\n")
            shutil.copy(answers, os.path.join(rdir, "exp.jsonl"))
            llava_stub.run_main(os.path.join(a.llava, "scripts", "convert_mmbench_for_submission.py"),
                                ["--annotation-file", tsvs[tsv], "--result-dir", rdir, "--upload-dir", udir, "--experiment", "exp"])
            shutil.copy(os.path.join(udir, "exp.xlsx"), os.path.join(a.out, f"{name}_expected.xlsx"))
            with open(os.path.join(a.out, f"{name}_expected_cells.json"), "w") as f:
                json.dump(cells_of(os.path.join(udir, "exp.xlsx")), f, ensure_ascii=False)
    finally:
        shutil.rmtree(work)
    print("wrote", os.path.abspath(a.out))


if __name__ == "__main__":
    main()
