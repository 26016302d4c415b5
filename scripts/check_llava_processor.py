#!/usr/bin/env python3
"""Check that transformers' AutoProcessor loads the processor files of a transformers-format save and prepares an
image and a prompt as vwlmm does (a one-off check, not run by the tests).

    npx tsx scripts/export_llava_processor_for_check.ts /tmp/llava-processor
    python3 scripts/check_llava_processor.py /tmp/llava-processor

For each of <dir>/pad (LLaVA-1.5's padding to a square) and <dir>/square (CLIP's centre crop):
  * AutoProcessor.from_pretrained loads the folder (preprocessor_config.json, processor_config.json, the tokenizer);
  * its pixel_values of <dir>/image.png equal vwlmm's preprocessClip (ours.json) within the bicubic resizers'
    rounding (max abs error < 0.05 after normalisation, mean < 0.01);
  * the prompt's input_ids are vwlmm's (tokenizer_image_token, the image token expanded to the image's features), and
    LlavaForConditionalGeneration's logits on them equal vwlmm's (relative error < 1e-4, float32);
  * a padded batch of two prompts (pad_token, left padding) gives the short one's logits as alone (< 1e-4);
  * <dir>/llava, the LLaVA layout, loads with AutoTokenizer as LLaVA's builder.py loads it, with vwlmm's special ids,
    and LLaVA's tokenizer_image_token gives vwlmm's ids for the prompt;
  * the folder's chat template renders a conversation as vwlmm's vicuna_v1 prompt does, and the chat template of every
    other conversation template renders the prompts buildPrompt / buildGenerationPrompt write (ours.json), and raises
    where they refuse the conversation.
Exit status 0 when all of it holds.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from hf_answer import tokenizer_image_token  # noqa: E402 (LLaVA's llava/mm_utils.py, as LLaVA has it)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="folder written by scripts/export_llava_processor_for_check.ts")
    args = ap.parse_args()
    ours = json.load(open(os.path.join(args.dir, "ours.json")))
    image = Image.open(os.path.join(args.dir, "image.png")).convert("RGB")
    ok = True
    for aspect in ("pad", "square"):
        folder, mine = os.path.join(args.dir, aspect), ours[aspect]
        processor = AutoProcessor.from_pretrained(folder)
        config = json.load(open(os.path.join(folder, "config.json")))
        batch = processor(images=image, text=ours["prompt"], return_tensors="pt")
        theirs = batch["pixel_values"][0].numpy().astype(np.float64)
        s = mine["size"]
        want = np.asarray(mine["pixels"], dtype=np.float64).reshape(3, s, s)
        err = np.abs(theirs - want) if theirs.shape == want.shape else None
        pixels_ok = err is not None and err.max() < 0.05 and err.mean() < 0.01
        count = int((batch["input_ids"][0] == config["image_token_index"]).sum())
        ids_ok = config["image_token_index"] == mine["imageTokenIndex"] and count == mine["imageTokens"]
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
        with torch.no_grad():
            logits = model(**batch).logits[0].double()
        same_ids = batch["input_ids"][0].tolist() == mine["inputIds"]
        ref = torch.tensor(mine["logits"], dtype=torch.float64).reshape(logits.shape) if same_ids else None
        rel = float((logits - ref).norm() / ref.norm()) if ref is not None else float("inf")
        print(f"{aspect}: {type(processor.image_processor).__name__}, pixel_values {tuple(theirs.shape)}"
              + (f" max |diff| {err.max():.4f} mean {err.mean():.5f}" if err is not None else f" vs ours {want.shape}")
              + f"; {count} image tokens (ours {mine['imageTokens']}); input_ids {'as' if same_ids else 'NOT as'} vwlmm's"
              + ("" if same_ids else f" ({batch['input_ids'][0].tolist()} vs {mine['inputIds']})")
              + f"; logits vs vwlmm's: relative error {rel:.2e}")
        ok = ok and pixels_ok and ids_ok and same_ids and rel < 1e-4
        # a batch of two prompts of different lengths, as generate is given one: the processor pads it (a pad_token),
        # on the left, and the short prompt's last logits are those it has alone
        longer = ours["prompt"].replace("what colour", "what colour is the big red circle on the left")
        padded = processor(images=[image, image], text=[ours["prompt"], longer], padding=True, return_tensors="pt")
        with torch.no_grad():
            last = model(**padded).logits[0, -1].double()
        batch_rel = float((last - logits[-1]).norm() / logits[-1].norm())
        left = processor.tokenizer.padding_side == "left" and int(padded["attention_mask"][0, 0]) == 0
        print(f"{aspect}: a padded batch of 2 (pad_token {processor.tokenizer.pad_token!r}, padding_side {processor.tokenizer.padding_side}): "
              f"the short prompt's last logits vs alone: relative error {batch_rel:.2e}")
        ok = ok and left and batch_rel < 1e-4
    # the LLaVA layout as LLaVA's code reads it: builder.py's AutoTokenizer (use_fast=False), mm_utils'
    # tokenizer_image_token (below, as LLaVA has it), which keeps one BOS only when it knows the bos_token_id
    for fast in (False, True):
        tok = AutoTokenizer.from_pretrained(os.path.join(args.dir, "llava"), use_fast=fast)
        special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "unk": tok.unk_token_id}
        llava_ids = tokenizer_image_token(ours["prompt"], tok)
        print(f"llava layout (use_fast={fast}): special ids {special} (vwlmm's {ours['special']}); tokenizer_image_token "
              + ("as vwlmm's" if llava_ids == ours["llavaIds"] else f"NOT as vwlmm's: {llava_ids} vs {ours['llavaIds']}"))
        ok = ok and special == ours["special"] and llava_ids == ours["llavaIds"]
    for t in ours["templates"]:
        bad = 0
        for c in t["cases"]:
            try:
                got = processor.apply_chat_template(c["messages"], chat_template=t["jinja"], add_generation_prompt=c["generation"], tokenize=False)
            except Exception as e:  # noqa: BLE001 (jinja's TemplateError: what vwlmm refuses, the template raises)
                got = None
                if c["expected"] is not None:
                    print(f"  {t['name']}: raised {e}")
            if got != c["expected"]:
                bad += 1
                print(f"  {t['name']}: {json.dumps(got)}\n  {' ' * len(t['name'])}  want {json.dumps(c['expected'])}")
        print(f"chat template {t['name']}: {len(t['cases']) - bad}/{len(t['cases'])} prompts as vwlmm writes them")
        ok = ok and bad == 0 and len(t["cases"]) > 0
    # the folder's own (its config's template, vicuna_v1), as AutoProcessor loaded it
    vicuna = next(t for t in ours["templates"] if t["name"] == "vicuna_v1")
    own = [processor.apply_chat_template(c["messages"], add_generation_prompt=c["generation"], tokenize=False) == c["expected"] for c in vicuna["cases"] if c["expected"] is not None]
    print(f"the folder's chat_template.jinja: {sum(own)}/{len(own)} prompts as vwlmm's vicuna_v1")
    ok = ok and all(own)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
