#!/usr/bin/env python3
"""Fixture for tests/data/chat_template.test.ts: every conversation template's chat_template.jinja (vwlmm's
jinjaChatTemplate) rendered by transformers' own renderer on the conversations of tests/support/chat_cases.ts.

  python3 scripts/make_chat_template_fixture.py [--out tests/fixtures/chat_template/rendered.json]

The templates and messages come from `npx tsx` (run from the repository root); each is rendered by
transformers.utils.chat_template_utils.render_jinja_template, what apply_chat_template calls (Jinja2, sandboxed, with
transformers' raise_exception), with add_generation_prompt as the case says. Only Jinja2's output is written, not
vwlmm's prompts: the test compares it with buildPrompt / buildGenerationPrompt as they are then, and refuses a fixture
whose templates are not jinjaChatTemplate's of the day (rerun this script after changing a template).

Written: {"transformers", "jinja2", "templates": [{name, jinja, cases: [{messages, generation, rendered, error}]}]},
rendered null and error the exception's message where the template raised. Needs transformers 5.18, jinja2.
"""
import argparse
import json
import os
import subprocess

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = "import { chatCases } from './tests/support/chat_cases'; process.stdout.write(JSON.stringify(chatCases()))"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "chat_template", "rendered.json"))
    args = parser.parse_args()
    templates = json.loads(subprocess.run(["npx", "tsx", "-e", EXPORT], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    out = []
    for t in templates:
        cases = []
        for c in t["cases"]:
            rendered, error = None, None
            try:
                prompts, _ = render_jinja_template(conversations=[c["messages"]], chat_template=t["jinja"], add_generation_prompt=c["generation"])
                rendered = prompts[0]
            except jinja2.TemplateError as e:  # raise_exception's TemplateError: what vwlmm refuses
                error = str(e)
            cases.append({"messages": c["messages"], "generation": c["generation"], "rendered": rendered, "error": error})
        out.append({"name": t["name"], "jinja": t["jinja"], "cases": cases})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"transformers": transformers.__version__, "jinja2": jinja2.__version__, "templates": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out}: {len(out)} templates, {sum(len(t['cases']) for t in out)} renderings")


if __name__ == "__main__":
    main()
