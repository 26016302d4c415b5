#!/usr/bin/env python3
"""Fixtures for tests/eval/gqa_mme.test.ts: GQA's eval.py and MME's convert_answer_to_mme.py + calculation.py, run
as is (in the file layout and with the command lines of LLaVA's scripts/v1_5/eval/gqa.sh and mme.sh) on answer files
made here, and what they print and write.

  python3 scripts/make_gqa_mme_fixtures.py --llava DIR --gqa-eval EVAL_PY --mme-convert CONVERT_PY \
      --mme-calculation CALCULATION_PY [--out tests/fixtures/eval]

DIR: a checkout of github.com/haotian-liu/LLaVA (scripts/convert_gqa_for_eval.py). EVAL_PY: GQA's eval.py as LLaVA
runs it (GQA's, with the changes LLaVA's docs/Evaluation.md links for the testdev release: no scene graphs or
choices files; a copy is playground/data/eval/gqa/data/eval/eval.py in github.com/SHI-Labs/VCoder 2f95684). CONVERT_PY:
playground/data/eval/MME/convert_answer_to_mme.py of LLaVA's eval.zip (haotian-liu/LLaVA 32cebc3, refs/pull/1199).
CALCULATION_PY: eval_tool/calculation.py of the MME authors' tools/eval_tool.zip (BradyFU/Awesome-Multimodal-Large-
Language-Models, branch Evaluation, 1c1d69e). Needs tqdm and scikit-learn. Deterministic (seeded). Written:
  gqa/  testdev_balanced_questions.json (GQA's layout: balanced and unbalanced questions, entailed ids, groups, types,
        semantic programs), answers.jsonl (LLaVA answer lines: capitalisation, periods, yes/no sentences, a repeated
        line); expected.txt / expected_consistency.txt: what eval.py prints for them (--tier testdev_balanced; and with
        --consistency); expected_balanced.txt: for answers.jsonl without the unbalanced questions' lines;
        expected_missing.txt: what it prints before it raises for answers.jsonl without one balanced question's
  mme/  benchmark/ (MME_Benchmark_release_version's layout: <category>/*.txt, or images/ + questions_answers_YN/),
        llava_mme.jsonl, answers.jsonl (yes/no words and sentences, case, punctuation, other answers, categories
        interleaved); expected/<category>.txt: what convert_answer_to_mme.py writes; expected.txt: what
        calculation.py prints for them
"""
import argparse
import contextlib
import io
import json
import os
import random
import runpy
import shutil
import sys
import tempfile


def run_script(path, argv, cwd):
    """`cd cwd && python path argv...`; returns (stdout, the exception it raised or None). stderr (tqdm) dropped."""
    out, saved_argv, saved_cwd = io.StringIO(), sys.argv, os.getcwd()
    sys.argv = [os.path.basename(path)] + argv
    os.chdir(cwd)
    err = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(path, run_name="__main__")
    except Exception as e:  # noqa: BLE001 - the reference's own failure is part of the fixture
        err = e
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    return out.getvalue(), err


# ---------------------------------------------------------------------------------------------------------------- GQA

GQA_OBJECTS = ["chair", "table", "dog", "cat", "car", "bus", "tree", "man", "woman", "shirt"]
GQA_COLORS = ["red", "blue", "white", "black", "green"]
GQA_GROUPS = ["furniture", "animal", "vehicle", "color", None]


def gqa_question(rng, qid, balanced):
    structural = rng.choice(["query", "query", "verify", "logic", "choose", "compare"])
    semantic = rng.choice(["obj", "attr", "rel", "cat", "global"])
    obj = rng.choice(GQA_OBJECTS)
    program = [{"operation": "select", "dependencies": [], "argument": f"{obj} ({rng.randint(100, 999)})"}]
    for _ in range(rng.randint(0, 3)):
        program.append({"operation": rng.choice(["relate", "filter color", "filter", "exist", "verify color", "same color"]),
                        "dependencies": [len(program) - 1], "argument": rng.choice(["to the left of,s", "red", "name", "_"])})
    if structural == "query":
        answer = rng.choice(GQA_OBJECTS + GQA_COLORS + ["left", "right"])
        program.append({"operation": "query", "dependencies": [len(program) - 1], "argument": rng.choice(["name", "color", "hposition"])})
        text = f"What is the {rng.choice(['thing', 'object', 'item'])} to the left of the {obj}?"
    elif structural == "choose":
        a, b = rng.sample(GQA_COLORS, 2)
        answer = rng.choice([a, b])
        program.append({"operation": rng.choice(["choose name", "choose color"]), "dependencies": [0], "argument": f"{a}|{b}"})
        text = f"Is the {obj} {a} or {b}?"
    else:
        answer = rng.choice(["yes", "no"])
        program.append({"operation": rng.choice(["verify color", "exist", "and", "or", "same color", "different"]),
                        "dependencies": [0], "argument": rng.choice(["red", "", "name"])})
        text = f"Is there a {rng.choice(GQA_COLORS)} {obj}  in the\timage?" if rng.random() < 0.3 else f"Is there a {obj} in the image?"
    group = rng.choice(GQA_GROUPS)
    return {
        "semantic": program, "entailed": [], "equivalent": [qid], "question": text, "imageId": f"n{rng.randint(10000, 99999)}",
        "isBalanced": balanced, "groups": {"global": group, "local": f"13-{obj}_{answer}"}, "answer": answer,
        "semanticStr": " ".join(p["operation"] for p in program), "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        "types": {"detailed": rng.choice(["relS", "existC", "objThisChoose", "weatherVerifyC", "directOf", "materialCompare"]),
                  "semantic": semantic, "structural": structural},
        "fullAnswer": f"The answer is {answer}.",
    }


def gqa_answer_text(rng, gold):
    forms = [gold, gold, gold.capitalize(), gold.upper() + ".", gold + ".", gold + "...", "The " + gold, gold + " ",
             " " + gold, gold + ". ", rng.choice(GQA_OBJECTS + GQA_COLORS + ["yes", "no"]), ""]
    if gold in ("yes", "no"):
        forms += ["Yes.", "No.", "Yes, it is.", "No, it is not.", "yes.", "NO", "No. It is not."]
    return rng.choice(forms)


def gqa_case(rng, out, convert, eval_py):
    os.makedirs(out, exist_ok=True)
    # ids: numeric strings out of numeric order (a dict keeps file order, and so must we), a leading zero, non-numeric
    ids = [str(rng.randint(200000000, 209999999)) for _ in range(42)] + [f"0{rng.randint(1000000, 9999999)}" for _ in range(4)] + [f"q{i}x" for i in range(2)]
    balanced_ids = ids
    unbalanced_ids = [str(rng.randint(10000000, 19999999)) for _ in range(12)]
    questions = {}
    order = balanced_ids + unbalanced_ids
    rng.shuffle(order)
    for qid in order:
        questions[qid] = gqa_question(rng, qid, qid in balanced_ids)
    all_ids = list(questions)
    for qid, q in questions.items():
        k = rng.choice([0, 0, 1, 2, 3])
        q["entailed"] = rng.sample(all_ids, k) + ([qid] if rng.random() < 0.2 else [])  # eval.py drops the question itself
    with open(os.path.join(out, "testdev_balanced_questions.json"), "w") as f:
        json.dump(questions, f)

    prompt = "\nAnswer the question using a single word or phrase."
    lines = []
    answer_order = list(questions)
    rng.shuffle(answer_order)
    for qid in answer_order:
        lines.append({"question_id": qid, "prompt": questions[qid]["question"] + prompt, "text": gqa_answer_text(rng, questions[qid]["answer"]),
                      "answer_id": f"a{qid}", "model_id": "m", "metadata": {}})
    # a question answered twice: the later line wins (a dict of the predictions)
    again = next(l for l in lines if l["question_id"] in balanced_ids)
    lines.append(dict(again, text=questions[again["question_id"]]["answer"].capitalize() + "."))
    rng.shuffle(lines)
    write_jsonl(os.path.join(out, "answers.jsonl"), lines)
    # derived in the test the same way: answers.jsonl without the unbalanced questions' lines / one balanced question's
    tmp = tempfile.mkdtemp()
    write_jsonl(os.path.join(tmp, "answers_balanced.jsonl"), [l for l in lines if l["question_id"] in balanced_ids])
    write_jsonl(os.path.join(tmp, "answers_missing.jsonl"), [l for l in lines if l["question_id"] != balanced_ids[7]])

    # gqa.sh: convert_gqa_for_eval.py --src merge.jsonl --dst $GQADIR/testdev_balanced_predictions.json, then
    # `cd $GQADIR; python eval/eval.py --tier testdev_balanced`
    answers = os.path.join(os.path.abspath(out), "answers.jsonl")
    for src, argv, name in [(answers, [], "expected.txt"), (answers, ["--consistency"], "expected_consistency.txt"),
                            (os.path.join(tmp, "answers_balanced.jsonl"), [], "expected_balanced.txt"),
                            (os.path.join(tmp, "answers_missing.jsonl"), [], "expected_missing.txt")]:
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(out, "testdev_balanced_questions.json"), d)
            run_script(convert, ["--src", src, "--dst", os.path.join(d, "testdev_balanced_predictions.json")], d)
            printed, err = run_script(eval_py, ["--tier", "testdev_balanced"] + argv, d)
        if name == "expected_missing.txt":
            assert err is not None and str(err) == "missing predictions", err
        elif err is not None:
            raise err
        with open(os.path.join(out, name), "w") as f:
            f.write(printed)
    shutil.rmtree(tmp)


# ---------------------------------------------------------------------------------------------------------------- MME

MME_PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
MME_COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]
MME_IMAGES_LAYOUT = {"artwork", "celebrity", "landmark", "posters", "scene"}  # images/ + questions_answers_YN/
MME_ANSWERS = ["Yes", "No", "yes", "no", "YES", "No.", "Yes.", "Yes, there is a dog.", "No, there is not.", "Not really.",
               "I don't know.", "Nope", "Yesterday", "y", "", " yes", "noyes", "Maybe yes", "It is yes", "\u0130s it? yes",
               "Oui", "None of them", "n o", "Yes\u2028no"]


def mme_case(rng, out, convert, calculation):
    bench = os.path.join(out, "benchmark")
    if os.path.exists(bench):
        shutil.rmtree(bench)
    questions = []
    for cat in MME_PERCEPTION + MME_COGNITION:
        images = [f"{rng.randint(0, 99999):05d}" for _ in range(rng.randint(1, 3))]
        if cat in MME_IMAGES_LAYOUT:
            qa_dir = os.path.join(bench, cat, "questions_answers_YN")
            os.makedirs(os.path.join(bench, cat, "images"), exist_ok=True)
            with open(os.path.join(bench, cat, "images", ".keep"), "w"):
                pass  # the script asserts images/ is a directory; git keeps no empty one
        else:
            qa_dir = os.path.join(bench, cat)
        os.makedirs(qa_dir, exist_ok=True)
        for img in images:
            ext = ".png" if cat in MME_COGNITION else ".jpg"
            qid = f"{cat}/images/{img}{ext}" if cat in MME_IMAGES_LAYOUT else f"{cat}/{img}{ext}"
            obj = rng.choice(["dog", "cat", "red car", "tower"])
            # the benchmark's own forms: one space or two before the instruction, CRLF or LF, trailing blanks
            sep = rng.choice([" ", " ", "  "])
            qs = [(f"Is there a {obj} in this image?{sep}Please answer yes or no.", "Yes"),
                  (f"Is there a {obj} {rng.choice(['', 'and a cup '])}on the left?{sep}Please answer yes or no.", "No")]
            rng.shuffle(qs)
            with open(os.path.join(qa_dir, img + ".txt"), "w", newline="") as f:
                for q, a in qs:
                    blank, eol = rng.choice(["", " "]), rng.choice(["\n", "\r\n"])
                    f.write(f"{q}\t{a}{blank}{eol}")
            for q, a in qs:
                if rng.random() < 0.15:
                    text = q  # a prompt that keeps MME's own instruction (no LLaVA suffix)
                else:
                    text = q.replace("  Please answer yes or no.", "").replace(" Please answer yes or no.", "") + "\nAnswer the question using a single word or phrase."
                questions.append({"question_id": qid, "image": qid, "text": text, "category": cat})
    # llava_mme.jsonl lists an image's two questions together; categories in no particular order
    pairs = [questions[i:i + 2] for i in range(0, len(questions), 2)]
    rng.shuffle(pairs)
    questions = [q for p in pairs for q in p]
    write_jsonl(os.path.join(out, "llava_mme.jsonl"), questions)
    answers, seen = [], set()
    for i, q in enumerate(questions):
        # a category's first answer a plain yes or no: calculation.py fails on a subtask without any (sklearn's precision)
        text = rng.choice(["Yes", "No"]) if q["category"] not in seen else rng.choice(MME_ANSWERS)
        seen.add(q["category"])
        answers.append({"question_id": q["question_id"], "prompt": q["text"], "text": text, "answer_id": f"a{i}", "model_id": "m", "metadata": {}})
    write_jsonl(os.path.join(out, "answers.jsonl"), answers)

    # mme.sh: in playground/data/eval/MME, `python convert_answer_to_mme.py --experiment E` (reads answers/E.jsonl and
    # MME_Benchmark_release_version/, writes eval_tool/answers/E/), then in eval_tool `python calculation.py
    # --results_dir answers/E`
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(bench, os.path.join(d, "MME_Benchmark_release_version"))
        os.makedirs(os.path.join(d, "answers"))
        shutil.copy(os.path.join(out, "answers.jsonl"), os.path.join(d, "answers", "exp.jsonl"))
        _, err = run_script(convert, ["--experiment", "exp"], d)
        if err is not None:
            raise err
        exp = os.path.join(os.path.join(d, "eval_tool", "answers", "exp"))
        if os.path.exists(os.path.join(out, "expected")):
            shutil.rmtree(os.path.join(out, "expected"))
        shutil.copytree(exp, os.path.join(out, "expected"))
        printed, err = run_script(calculation, ["--results_dir", "answers/exp"], os.path.join(d, "eval_tool"))
        if err is not None:
            raise err
    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write(printed)


def write_jsonl(path, recs):
    with open(path, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a LLaVA checkout (scripts/convert_gqa_for_eval.py)")
    ap.add_argument("--gqa-eval", required=True, help="GQA's eval.py, as LLaVA runs it")
    ap.add_argument("--mme-convert", required=True, help="convert_answer_to_mme.py of LLaVA's eval.zip")
    ap.add_argument("--mme-calculation", required=True, help="calculation.py of MME's eval_tool")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "eval"))
    a = ap.parse_args()
    convert = os.path.abspath(os.path.join(a.llava, "scripts", "convert_gqa_for_eval.py"))
    rng = random.Random(17)
    gqa_case(rng, os.path.join(a.out, "gqa"), convert, os.path.abspath(a.gqa_eval))
    mme_case(rng, os.path.join(a.out, "mme"), os.path.abspath(a.mme_convert), os.path.abspath(a.mme_calculation))
    print("wrote", os.path.abspath(os.path.join(a.out, "gqa")), "and", os.path.abspath(os.path.join(a.out, "mme")))


if __name__ == "__main__":
    main()
