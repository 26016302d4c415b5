// chat_template.jinja (jinjaChatTemplate, written into transformers-format saves) against transformers' own renderer:
// scripts/make_chat_template_fixture.py renders every template with Jinja2, as apply_chat_template does, on the
// conversations of tests/support/chat_cases.ts. Each rendering must be the prompt buildGenerationPrompt / buildPrompt
// writes now, and the template must raise exactly where vwlmm refuses the conversation.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { getTemplate, TEMPLATES } from '../../src/data/conversation';
import { chatCases } from '../support/chat_cases';

interface Rendered { messages: unknown[]; generation: boolean; rendered: string | null; error: string | null }
const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'chat_template', 'rendered.json'), 'utf8')) as {
  transformers: string;
  templates: { name: string; jinja: string; cases: Rendered[] }[];
};
const ours = chatCases();

describe("chat_template.jinja: transformers' renderer writes vwlmm's prompts", () => {
  it('the fixture holds every template, as jinjaChatTemplate writes it today, and both outcomes', () => {
    expect(fixture.templates.map((t) => t.name)).toEqual(Object.keys(TEMPLATES));
    for (const t of ours) {
      const theirs = fixture.templates.find((f) => f.name === t.name)!;
      // a template changed since the fixture: rerun scripts/make_chat_template_fixture.py
      expect(theirs.jinja, `${t.name}: the fixture's template is not jinjaChatTemplate's`).toBe(t.jinja);
      expect(theirs.cases.map((c) => [c.messages, c.generation])).toEqual(t.cases.map((c) => [c.messages, c.generation]));
    }
    const all = fixture.templates.flatMap((t) => t.cases);
    expect(all.filter((c) => c.rendered !== null).length).toBeGreaterThan(40);
    expect(all.filter((c) => c.error !== null).length).toBeGreaterThan(5);
    expect(all.filter((c) => c.generation).length).toBeGreaterThan(20);
  });
  for (const t of ours) {
    it(t.name, () => {
      const theirs = fixture.templates.find((f) => f.name === t.name)!;
      t.cases.forEach((c, i) => {
        const got = theirs.cases[i];
        const where = `${t.name} case ${i}: ${JSON.stringify(c.messages).slice(0, 100)}`;
        if (c.expected === null) {
          expect(got.rendered, `${where}: vwlmm refuses it, the template renders it`).toBeNull();
          expect(got.error, where).toMatch(new RegExp(`^chat template ${getTemplate(t.name).name}: `)); // v1 is vicuna_v1
        } else {
          expect(got.error, `${where}: the template raised`).toBeNull();
          expect(got.rendered, where).toBe(c.expected);
        }
      });
    });
  }
});
