// Conversations for every conversation template with the prompt vwlmm writes for them, shared by the chat-template
// fixture (scripts/make_chat_template_fixture.py renders each template's chat_template.jinja with Jinja2, as
// transformers' apply_chat_template does), its test (tests/data/chat_template.test.ts) and
// scripts/export_llava_processor_for_check.ts.
import { buildGenerationPrompt, buildPrompt, getTemplate, jinjaChatTemplate, TEMPLATES, Turn } from '../../src/data/conversation';

export interface ChatCase {
  /** transformers' messages for the conversation */
  messages: Record<string, unknown>[];
  /** add_generation_prompt: the conversation ends with the user's turn */
  generation: boolean;
  /** buildGenerationPrompt's / buildPrompt's prompt, or null where vwlmm refuses the conversation (the template must raise) */
  expected: string | null;
}

export interface TemplateCases {
  name: string;
  jinja: string;
  cases: ChatCase[];
}

/** transformers' messages for our turns: a leading "<image>\n" as an image item, other turns as strings (or text items). */
export function messagesOf(turns: Turn[], system?: string, list = false): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = system === undefined ? [] : [{ role: 'system', content: system }];
  for (const t of turns) {
    const role = t.from === 'human' ? 'user' : 'assistant';
    if (t.value.startsWith('<image>\n')) out.push({ role, content: [{ type: 'image' }, { type: 'text', text: t.value.slice('<image>\n'.length) }] });
    else out.push({ role, content: list ? [{ type: 'text', text: t.value }] : t.value });
  }
  return out;
}

/** For every template: its chat_template.jinja and the cases, each with the prompt vwlmm writes or null where it refuses. */
export function chatCases(): TemplateCases[] {
  const q = (value: string): Turn => ({ from: 'human', value }), a = (value: string): Turn => ({ from: 'gpt', value });
  const conversations: { turns: Turn[]; system?: string; list?: boolean }[] = [
    { turns: [q('<image>\nWhat colour is the circle?')] },
    { turns: [q('<image>\nWhat colour is the circle?'), a('Red.'), q('And the square?')] },
    { turns: [q('Where is <image> the square?')] },
    { turns: [q('Where is <image> the square?')], list: true },
    { turns: [q('<image>\nWhat colour is the circle?'), a('')] },
    { turns: [q('<image>\nHow many shapes?')], system: 'Answer in one word.' },
    { turns: [a('Hello.'), q('<image>\nWhat colour is the circle?')] }, // a leading reply: dropped
    { turns: [q('<image>\nWhat colour?'), q('And the square?')] }, // out of turn: refused
    { turns: [q('<image>\nA caption?'), a('red circle'), q('Another?'), a('blue square')] }, // plain: one round only
    { turns: [q('What colour is the circle?')] }, // plain: needs its image
    { turns: [q('<image>\n  Spaces kept, "quotes", {braces} and \\ a backslash  '), a('Yes.\nTwo lines.')] },
  ];
  return Object.keys(TEMPLATES).map((name) => {
    const t = getTemplate(name);
    const cases = conversations.map((c): ChatCase => {
      const messages = messagesOf(c.turns, c.system, c.list);
      const generation = c.turns[c.turns.length - 1].from === 'human';
      let expected: string | null;
      if (c.system !== undefined && t.style !== 'two' && t.style !== 'llama_2') expected = null; // no system prompt to replace
      else {
        const used = c.system === undefined ? t : { ...t, system: c.system };
        try {
          expected = generation ? buildGenerationPrompt(c.turns, used).prompt : buildPrompt(c.turns, { ...used, imageTag: false });
        } catch {
          expected = null;
        }
      }
      return { messages, generation, expected };
    });
    return { name, jinja: jinjaChatTemplate(t), cases };
  });
}
