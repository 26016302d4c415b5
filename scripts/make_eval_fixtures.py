#!/usr/bin/env python3
"""Fixtures for tests/eval/official_scorers.test.ts: LLaVA-1.5's own scoring code, run as is on answer files made
here, and what it returns and prints.

  python3 scripts/make_eval_fixtures.py --llava DIR [--out tests/fixtures/eval]

DIR is a checkout of github.com/haotian-liu/LLaVA (only llava/eval/m4c_evaluator.py, eval_textvqa.py, eval_pope.py
and eval_science_qa.py, and scripts/convert_*.py are used; they are loaded by path, so the package's model code and its dependencies are not needed;
tqdm is). Written:
  evalai.json      EvalAIAnswerProcessor on answer variants (number words, articles, contractions, punctuation,
                   periods, commas in numbers, whitespace, "unanswerable", ...), the per-question VQA accuracy of
                   TextVQAAccuracyEvaluator on prediction / 10-answer sets, and Python's repr and '%.Nf' of floats
  textvqa/         annotations.json (TextVQA_0.5.1_val.json's layout), answers.jsonl (LLaVA's three TextVQA prompt
                   forms), expected.txt (what eval_textvqa.py prints)
  pope/            questions.jsonl, annotations/coco_pope_<category>.json, answers.jsonl, expected.txt (what
                   eval_pope.py prints; os.listdir sorted, as `vwlmm score pope` orders the categories)
  sqa/             problems.json, pid_splits.json, answers.jsonl, expected.txt (what eval_science_qa.py prints) and
                   expected_output.json / expected_result.json (what it writes)
  submission/      answers (with a broken and a repeated line), the VQAv2 / VizWiz / SEED question files, and what
                   scripts/convert_{vqav2,vizwiz}_for_submission.py, convert_{gqa,mmvet}_for_eval.py and
                   convert_seed_for_submission.py print and write for them; *_odd*: values LLaVA's lines never
                   hold but the scripts take (a null or non-string text, null / bool / float / list ids, SEED type
                   ids as strings), and what the scripts write for them
"""
import argparse
import contextlib
import io
import json
import os
import random
import runpy
import sys
import types

from load_by_path import load

BASE_ANSWERS = [
    "two", "Two.", "2", "2.", "two.", "The two", "a dog", "an apple", "the", "none", "zero", "ten", "10", "eleven",
    "Yes", "yes.", "Yes, it is.", "no", "No, there is not.", "not sure", "unanswerable", "Unanswerable.",
    "dont", "Dont know", "isnt it", "its", "it's", "John's car", "Im here", "cant", "won't", "wont", "y'all",
    "1,000", "1, 000", "3.5", "3.5.", "a.b.c", "e.g.", "t-shirt", "t - shirt", "e-mail", "black/white", "black / white",
    "(left)", "[right]", "\"stop\"", "{x}", "a=b", "c++", "back\\slash", "snake_case", "<tag>", "@home", "`tick`",
    "hello!", "what?", "semi;colon", "  spaced   out  ", "tab\there", "new\nline", "MiXeD CaSe", "CAFÉ", "Straße",
    "coca-cola", "7-eleven", "9.30", "9:30", "$5", "5$", "50%", "1st", "No.", "No. 5", "no.5", "a lot", "an hour",
    "one two three", "the the the", "\u00a0nbsp", "zero-width\u200bspace", "\u0663.", "\u0663\u066b\u0664",
    "end\x85nel", "\x1cfs", ". " * 40 + "x", "." * 40 + "1",
]


def evalai_cases(m4c, rng):
    proc = m4c.EvalAIAnswerProcessor()
    answers = list(BASE_ANSWERS)
    # random combinations of the pieces above
    pieces = ["two", "The", "a", "dog", ",", ".", "?", "!", "-", "/", "don't", "dont", "3.5", "1,000", "  ", "'s", "none"]
    for _ in range(150):
        answers.append("".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(1, 6))))
    processed = [[a, proc(a)] for a in answers]
    scores = []
    evaluator = m4c.TextVQAAccuracyEvaluator()
    pool = ["two", "2", "two.", "The two", "dog", "a dog", "dogs", "yes", "no", "unanswerable", "dont know", "don't know",
            "1,000", "1000", "3.5", "t-shirt", "tshirt", "t shirt"]
    for _ in range(200):
        gt = [rng.choice(pool) for _ in range(10)]
        pred = rng.choice(pool + ["Two", "A dog.", "No.", "cat", "Don't know", "T-Shirt"])
        score = evaluator._compute_answer_scores(gt).get(proc(pred), 0.0)
        scores.append({"pred": pred, "gt": gt, "score": score})
    floats = [0.0, -0.0, 1.0, 0.5, 0.1, 1 / 3, 2 / 3, 0.125, 0.375, 0.0625, 1e-05, 1.5e-05, 0.0001, 0.00012345, 123.456,
              1e16, 1.2345e16, 12345678901234.5, 0.8571428571428571, 0.9, 0.85, 0.835, 0.8345, 0.999, 0.9995, 99.995,
              12.125, 12.135, 0.0005, 2.675, 1.005, -0.125, -2.5, 1e-7, 5e-324, 1e300]
    floats += [rng.random() for _ in range(40)] + [rng.randint(0, 10 ** 6) / 8 for _ in range(20)]
    reprs = [[f, repr(f)] for f in floats]
    fixed = [[f, n, "%.*f" % (n, f)] for f in floats[:-2] for n in (0, 2, 3)]
    return {"processed": processed, "scores": scores, "repr": reprs, "fixed": fixed}


def textvqa_case(rng, out):
    os.makedirs(out, exist_ok=True)
    data, lines = [], []
    pool = ["two", "2", "coca cola", "coca-cola", "stop", "STOP", "yes", "no", "unanswerable", "10", "ten", "nike", "the nike"]
    for i in range(60):
        q = f"What is written on sign {i}?"
        image_id = f"img{i % 40:03d}"
        answers = [rng.choice(pool) for _ in range(10)]
        data.append({"image_id": image_id, "question": q, "question_id": i, "answers": answers})
        form = i % 3
        if form == 0:
            prompt = f"OCR tokens: foo bar Question: {q} Short answer:"
        elif form == 1:
            prompt = f"{q}\nReference OCR token: foo, bar\nAnswer the question using a single word or phrase."
        else:
            prompt = f"{q}\nAnswer the question using a single word or phrase."
        pred = rng.choice(pool + ["Two.", "Coca-Cola", "The Nike.", "stop sign"])
        lines.append({"question_id": image_id, "prompt": prompt, "text": pred, "answer_id": f"a{i}", "model_id": "m", "metadata": {}})
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump({"dataset_name": "textvqa", "data": data}, f)
    with open(os.path.join(out, "answers.jsonl"), "w") as f:
        for l in lines:
            f.write(json.dumps(l) + "\n")


def pope_case(rng, out):
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    questions, answers = [], []
    texts = ["Yes, there is a dog in the image.", "No, there is no dog.", "There is not a dog.", "No.", "Yes.", "yes",
             "no", "I do not see one. Yes it could be.", "Yes, but no cat.", "Not really", "No dog, yes cat."]
    for c, category in enumerate(["adversarial", "popular", "random"]):
        labels = []
        for i in range(30):
            qid = c * 1000 + i
            questions.append({"question_id": qid, "image": f"COCO_{qid}.jpg", "text": "Is there a dog in the image?", "category": category})
            labels.append({"question_id": qid, "label": rng.choice(["yes", "no"])})
            answers.append({"question_id": qid, "prompt": "Is there a dog in the image?", "text": rng.choice(texts), "answer_id": str(qid), "model_id": "m", "metadata": {}})
        with open(os.path.join(out, "annotations", f"coco_pope_{category}.json"), "w") as f:
            for l in labels:
                f.write(json.dumps(l) + "\n")
    rng.shuffle(answers)  # categories interleaved, each in its label order (zip pairs them by position)
    answers.sort(key=lambda a: (a["question_id"] // 1000, a["question_id"]))
    with open(os.path.join(out, "questions.jsonl"), "w") as f:
        for q in questions:
            f.write(json.dumps(q) + "\n")
    with open(os.path.join(out, "answers.jsonl"), "w") as f:
        for a in answers:
            f.write(json.dumps(a) + "\n")


def sqa_case(rng, out):
    os.makedirs(out, exist_ok=True)
    problems, test, lines = {}, [], []
    texts = ["A", "B", "C", "D", "E", "B. the second", "C.", "The answer is C.", "The answer is C", "The answer is B. The answer is D.",
             "Maybe A.", "the answer is a.", "E. five", "The answer is D!", "The answer is A.\nBecause", "Réponse: The answer is B. ✓", ""]
    for i in range(80):
        pid = str(1000 + i)
        n = rng.choice([2, 3, 4, 5])
        problems[pid] = {"question": f"q{i}", "choices": [f"c{k}" for k in range(n)], "answer": rng.randrange(n),
                         "subject": rng.choice(["natural science", "social science", "language science"]), "grade": f"grade{rng.randint(1, 12)}"}
        test.append(pid)
        if i % 9 == 4:
            continue  # no prediction: FAILED
        image = i % 3 != 0
        prompt = ("<image>\n" if image else "") + f"Question {i}\nOptions: (A) x (B) y\nAnswer with the option's letter from the given choices directly."
        lines.append({"question_id": pid, "prompt": prompt, "text": rng.choice(texts), "answer_id": f"a{i}", "model_id": "m", "metadata": {}})
    test.append(test[3])  # a repeated id: the official dict keeps one
    with open(os.path.join(out, "problems.json"), "w") as f:
        json.dump(problems, f)
    with open(os.path.join(out, "pid_splits.json"), "w") as f:
        json.dump({"test": test, "val": test[:10]}, f)
    with open(os.path.join(out, "answers.jsonl"), "w") as f:
        for l in lines:
            f.write(json.dumps(l) + "\n")


def run_script(path, argv):
    """A script of LLaVA's run as `python path argv...`; returns what it printed."""
    buf, saved = io.StringIO(), sys.argv
    sys.argv = [os.path.basename(path)] + argv
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = saved
    return buf.getvalue()


def submission_cases(rng, out, scripts):
    os.makedirs(out, exist_ok=True)
    texts = ["Two.", "yes", "No, it is not.", "the dog", "1,000", "Dont know", "unanswerable", "3.5", "café", "Ten!", "e.g.",
             "RED...", "A", "B", "C", "D", "Réponse ✓", ""]
    # answers: ids 0..39 (an int id, a duplicate line whose later answer wins, a broken line, a blank line)
    lines = [json.dumps({"question_id": i, "prompt": "q", "text": rng.choice(texts), "answer_id": "x", "model_id": "m", "metadata": {}}) for i in range(40)]
    lines.insert(5, json.dumps({"question_id": 3, "prompt": "q", "text": "overridden later? no: this one is earlier"}))
    lines.insert(9, "{not json")
    answers = os.path.join(out, "answers.jsonl")
    with open(answers, "w") as f:
        f.write("\n".join(lines) + "\n")
    clean = os.path.join(out, "answers_clean.jsonl")
    with open(clean, "w") as f:
        f.write("\n".join(l for l in lines if l.startswith("{\"")) + "\n")
    # VQAv2: the test-dev split has questions without answers (answer '')
    vdir = os.path.join(out, "vqav2_layout")
    os.makedirs(os.path.join(vdir, "answers", "test", "ckpt"), exist_ok=True)
    with open(os.path.join(vdir, "answers", "test", "ckpt", "merge.jsonl"), "w") as f:
        f.write(open(answers).read())
    with open(os.path.join(out, "vqav2_test.jsonl"), "w") as f:
        for i in range(45):
            f.write(json.dumps({"question_id": i, "image": f"COCO_{i}.jpg", "text": "q?"}) + "\n")
    with open(os.path.join(vdir, "llava_vqav2_mscoco_test2015.jsonl"), "w") as f:
        f.write(open(os.path.join(out, "vqav2_test.jsonl")).read())
    printed = run_script(os.path.join(scripts, "convert_vqav2_for_submission.py"), ["--dir", vdir, "--ckpt", "ckpt", "--split", "test"])
    with open(os.path.join(out, "vqav2_expected.txt"), "w") as f:
        f.write(printed)
    with open(os.path.join(vdir, "answers_upload", "test", "ckpt.json")) as src, open(os.path.join(out, "vqav2_expected.json"), "w") as dst:
        dst.write(src.read())
    import shutil
    shutil.rmtree(vdir)
    # VizWiz: every question answered
    with open(os.path.join(out, "vizwiz_test.jsonl"), "w") as f:
        for i in range(40):
            f.write(json.dumps({"question_id": i, "image": f"VizWiz_test_{i:08d}.jpg", "text": "q?"}) + "\n")
    printed = run_script(os.path.join(scripts, "convert_vizwiz_for_submission.py"), ["--annotation-file", os.path.join(out, "vizwiz_test.jsonl"),
                         "--result-file", answers, "--result-upload-file", os.path.join(out, "vizwiz_expected.json")])
    with open(os.path.join(out, "vizwiz_expected.txt"), "w") as f:
        f.write(printed)
    run_script(os.path.join(scripts, "convert_gqa_for_eval.py"), ["--src", clean, "--dst", os.path.join(out, "gqa_expected.json")])
    run_script(os.path.join(scripts, "convert_mmvet_for_eval.py"), ["--src", clean, "--dst", os.path.join(out, "mmvet_expected.json")])
    # SEED-Bench: 9 question types over image and video questions, ids as strings (the script int()s them)
    qtypes = {f"Type {k}": k for k in range(1, 10)}
    questions = []
    for i in range(40):
        qt = 1 + i % 9
        questions.append({"question_id": str(i), "question_type_id": qt, "data_type": "image" if qt <= 6 else "video", "answer": rng.choice("ABCD")})
    with open(os.path.join(out, "seed.json"), "w") as f:
        json.dump({"questions": questions, "question_type": qtypes}, f)
    seed_answers = os.path.join(out, "seed_answers.jsonl")
    with open(seed_answers, "w") as f:
        for q in questions:
            f.write(json.dumps({"question_id": int(q["question_id"]), "prompt": "q", "text": q["answer"] if rng.random() < 0.6 else "A"}) + "\n")
    printed = run_script(os.path.join(scripts, "convert_seed_for_submission.py"), ["--annotation-file", os.path.join(out, "seed.json"),
                         "--result-file", seed_answers, "--result-upload-file", os.path.join(out, "seed_expected.jsonl")])
    with open(os.path.join(out, "seed_expected.txt"), "w") as f:
        f.write(printed)


def odd_cases(out, scripts):
    """What the converters do with values they do not crash on: MM-Vet copies a null or non-string text and str()s any
    id, GQA writes any id as json.dump does, SEED compares a null text as unequal and sorts string type ids as strings,
    VQAv2 writes a float id as a float."""
    ids = [None, True, 1.5, 2.5e-07, 7, "007", "é ✓", [1, "a'b"], {"k": None}]
    texts = [None, 1.5, "A", ["x"], "Yes.", "b", "ü", "", "end."]
    odd = os.path.join(out, "answers_odd.jsonl")
    with open(odd, "w") as f:
        for i, t in zip(ids, texts):
            f.write(json.dumps({"question_id": i, "prompt": "q", "text": t}) + "\n")
    run_script(os.path.join(scripts, "convert_mmvet_for_eval.py"), ["--src", odd, "--dst", os.path.join(out, "mmvet_odd_expected.json")])
    gqa_odd = os.path.join(out, "answers_odd_gqa.jsonl")  # rstrip needs a str text
    with open(gqa_odd, "w") as f:
        for i, t in zip(ids, texts):
            f.write(json.dumps({"question_id": i, "text": t if isinstance(t, str) else "NO."}) + "\n")
    run_script(os.path.join(scripts, "convert_gqa_for_eval.py"), ["--src", gqa_odd, "--dst", os.path.join(out, "gqa_odd_expected.json")])
    # SEED: type ids as strings ("10" sorts before "2"), a null text, a number text
    qtypes = {"one": "1", "two": "2", "ten": "10", "three": "3"}
    questions = [{"question_id": str(i), "question_type_id": ["1", "2", "10", "3"][i % 4], "data_type": "image" if i < 7 else "video", "answer": "ABCD"[i % 4]} for i in range(9)]
    with open(os.path.join(out, "seed_odd.json"), "w") as f:
        json.dump({"questions": questions, "question_type": qtypes}, f)
    seed_odd = os.path.join(out, "seed_odd_answers.jsonl")
    with open(seed_odd, "w") as f:
        for i, q in enumerate(questions):
            text = None if i == 1 else 3 if i == 2 else "B" if i == 4 else q["answer"]  # every type has a right answer
            f.write(json.dumps({"question_id": int(q["question_id"]), "text": text}) + "\n")
    printed = run_script(os.path.join(scripts, "convert_seed_for_submission.py"), ["--annotation-file", os.path.join(out, "seed_odd.json"),
                         "--result-file", seed_odd, "--result-upload-file", os.path.join(out, "seed_odd_expected.jsonl")])
    with open(os.path.join(out, "seed_odd_expected.txt"), "w") as f:
        f.write(printed)
    # VQAv2: float ids (json.loads gives floats; json.dump writes their repr)
    vdir = os.path.join(out, "vqav2_layout")
    os.makedirs(os.path.join(vdir, "answers", "test", "ckpt"), exist_ok=True)
    with open(os.path.join(vdir, "answers", "test", "ckpt", "merge.jsonl"), "w") as f:
        f.write(json.dumps({"question_id": 1.5, "text": "Two"}) + "\n" + json.dumps({"question_id": 2, "text": "no"}) + "\n")
    with open(os.path.join(out, "vqav2_odd_test.jsonl"), "w") as f:
        for i in [1.5, 2, 2.25e-7, 3]:
            f.write(json.dumps({"question_id": i}) + "\n")
    with open(os.path.join(vdir, "llava_vqav2_mscoco_test2015.jsonl"), "w") as f:
        f.write(open(os.path.join(out, "vqav2_odd_test.jsonl")).read())
    run_script(os.path.join(scripts, "convert_vqav2_for_submission.py"), ["--dir", vdir, "--ckpt", "ckpt", "--split", "test"])
    with open(os.path.join(vdir, "answers_upload", "test", "ckpt.json")) as src, open(os.path.join(out, "vqav2_odd_expected.json"), "w") as dst:
        dst.write(src.read())
    import shutil
    shutil.rmtree(vdir)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a LLaVA checkout")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "eval"))
    a = ap.parse_args()
    ev = os.path.join(a.llava, "llava", "eval")
    pkg, sub = types.ModuleType("llava"), types.ModuleType("llava.eval")
    pkg.__path__, sub.__path__ = [], []
    sys.modules["llava"], sys.modules["llava.eval"] = pkg, sub
    m4c = load(os.path.join(ev, "m4c_evaluator.py"), "llava.eval.m4c_evaluator")
    textvqa = load(os.path.join(ev, "eval_textvqa.py"), "llava.eval.eval_textvqa")
    rng = random.Random(0)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "evalai.json"), "w") as f:
        json.dump(evalai_cases(m4c, rng), f, ensure_ascii=False, indent=0)

    tdir = os.path.join(a.out, "textvqa")
    textvqa_case(rng, tdir)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        textvqa.eval_single(os.path.join(tdir, "annotations.json"), os.path.join(tdir, "answers.jsonl"))
    with open(os.path.join(tdir, "expected.txt"), "w") as f:
        f.write(buf.getvalue())

    pdir = os.path.join(a.out, "pope")
    pope_case(rng, pdir)
    buf = io.StringIO()
    real_listdir = os.listdir
    os.listdir = lambda p: sorted(real_listdir(p))
    argv = sys.argv
    sys.argv = ["eval_pope.py", "--annotation-dir", os.path.join(pdir, "annotations"), "--question-file",
                os.path.join(pdir, "questions.jsonl"), "--result-file", os.path.join(pdir, "answers.jsonl")]
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(os.path.join(ev, "eval_pope.py"), run_name="__main__")
    finally:
        os.listdir, sys.argv = real_listdir, argv
    with open(os.path.join(pdir, "expected.txt"), "w") as f:
        f.write(buf.getvalue())

    sdir = os.path.join(a.out, "sqa")
    sqa_case(rng, sdir)
    buf = io.StringIO()
    sys.argv = ["eval_science_qa.py", "--base-dir", sdir, "--result-file", os.path.join(sdir, "answers.jsonl"),
                "--output-file", os.path.join(sdir, "expected_output.json"), "--output-result", os.path.join(sdir, "expected_result.json")]
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(os.path.join(ev, "eval_science_qa.py"), run_name="__main__")
    finally:
        sys.argv = argv
    with open(os.path.join(sdir, "expected.txt"), "w") as f:
        f.write(buf.getvalue())
    submission_cases(rng, os.path.join(a.out, "submission"), os.path.join(a.llava, "scripts"))
    odd_cases(os.path.join(a.out, "submission"), os.path.join(a.llava, "scripts"))
    print("wrote", os.path.abspath(a.out))


if __name__ == "__main__":
    main()
