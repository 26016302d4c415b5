#!/usr/bin/env python3
"""The transformers side of the answering-speed comparison (issue 17; the vwlmm side, which makes the model, the
images and the question file and runs this script, is benchmarks/answer_throughput.ts).

LLaVA's model_vqa_loader over a question file (JSONL: question_id, image, text) with transformers'
LlavaForConditionalGeneration.generate: greedy (do_sample False, one beam), batched (consecutive questions, left
padding, as batched HF generation pads), a fixed max_new_tokens, float32, torch.set_num_threads(--threads).
The prompt and the pixels are built here, independently of vwlmm, as LLaVA builds them:
  * the prompt: conv_vicuna_v1.get_prompt() (SeparatorStyle.TWO) of the human turn "<image>\\n" + text (the text as it
    is), the assistant turn open; tokenizer_image_token (LLaVA's, verbatim: BOS once, -200 per <image>), then the
    -200 expanded to image_seq_length image tokens, as the llava-hf processor does;
  * the pixels: CLIPImageProcessor's PIL path (CLIPImageProcessorPil: shortest side to the tower's size, bicubic,
    centre crop, rescale, normalise with the config's image_mean / image_std; expand2square first for 'pad').
Each timed run does what vwlmm's answerQuestions does per batch: read and preprocess the images, tokenize,
generate, decode (skip_special_tokens, stripped), write LLaVA's answer lines (question_id, prompt, text, answer_id,
model_id, metadata) and flush.

Before any timing, --check compares with what vwlmm computed for the first questions (a safetensors file written by
answer_throughput.ts): the prompt token ids, the pixels and the next-token logits at the end of the prompt. A
different prompt, preprocessing or set of weights ends the script with exit code 2 and says which.

  python3 benchmarks/hf_answer.py --model DIR --questions Q.jsonl --image-folder DIR --answers-prefix OUT
      [--batch-size 16] [--budgets 1,8] [--threads 2] [--warmup 16] [--check check.safetensors] [--profile STEPS]
      [--device cuda --dtype bf16]

Prints one JSON line: versions, the checks, and per budget the seconds, answers and generated tokens.
"""
import argparse
import json
import os
import sys
import time
import uuid

import torch

IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder
SYSTEM_VICUNA_V1 = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def vicuna_v1_prompt(question):
    """conv_vicuna_v1 (llava/conversation.py): SeparatorStyle.TWO, sep ' ', sep2 '</s>', roles USER / ASSISTANT;
    messages [USER, question], [ASSISTANT, None]."""
    seps = [" ", "</s>"]
    ret = SYSTEM_VICUNA_V1 + seps[0]
    for i, (role, message) in enumerate([("USER", question), ("ASSISTANT", None)]):
        ret += role + ": " + message + seps[i % 2] if message else role + ":"
    return ret


def tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """llava/mm_utils.py tokenizer_image_token, verbatim in effect."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def expand2square(pil_img, background_color):
    """llava/mm_utils.py expand2square."""
    from PIL import Image
    width, height = pil_img.size
    if width == height:
        return pil_img
    if width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    result = Image.new(pil_img.mode, (height, height), background_color)
    result.paste(pil_img, ((height - width) // 2, 0))
    return result


class Answerer:
    def __init__(self, model_dir, device="cpu"):
        import transformers
        from transformers import AutoTokenizer, LlavaForConditionalGeneration
        try:  # transformers 5: the PIL path has its own class
            from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        except ImportError:  # transformers 4: CLIPImageProcessor is the PIL path
            from transformers import CLIPImageProcessor as CLIPImageProcessorPil
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config_json = json.load(f)
        template = self.config_json.get("conversation_template", "vicuna_v1")
        if template not in ("vicuna_v1", "v1"):
            raise SystemExit(f"hf_answer.py: conversation template {template!r}: only vicuna_v1 is written here")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.device = torch.device(device)
        v = tuple(int(x) for x in transformers.__version__.split(".")[:2])
        fp32 = {"dtype" if v >= (4, 56) else "torch_dtype": torch.float32}  # from_pretrained's dtype argument since 4.56
        self.model = LlavaForConditionalGeneration.from_pretrained(model_dir, **fp32).to(self.device).eval()
        cfg = self.model.config
        self.image_token = cfg.image_token_index
        self.num_patches = cfg.image_seq_length
        size = cfg.vision_config.image_size
        mean = self.config_json.get("image_mean", [0.48145466, 0.4578275, 0.40821073])
        std = self.config_json.get("image_std", [0.26862954, 0.26130258, 0.27577711])
        self.aspect = self.config_json.get("image_aspect_ratio", "square")
        self.mean = mean
        self.processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                               image_mean=mean, image_std=std, do_center_crop=True, do_resize=True,
                                               do_rescale=True, do_normalize=True, do_convert_rgb=True)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_id = self.tokenizer.eos_token_id

    def prompt_ids(self, text):
        """The prompt with the single -200 placeholder (what LLaVA feeds its own model)."""
        return tokenizer_image_token(vicuna_v1_prompt("<image>\n" + text), self.tokenizer)

    def expand(self, ids):
        out = []
        for t in ids:
            out.extend([self.image_token] * self.num_patches if t == IMAGE_TOKEN_INDEX else [t])
        return out

    def pixels(self, file):
        from PIL import Image
        img = Image.open(file).convert("RGB")
        if self.aspect == "pad":
            img = expand2square(img, tuple(int(x * 255) for x in self.mean))
        return self.processor(images=[img], return_tensors="pt")["pixel_values"][0]

    def batch_inputs(self, questions, image_folder):
        rows = [self.expand(self.prompt_ids(q["text"])) for q in questions]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for b, r in enumerate(rows):  # left padding
            ids[b, T - len(r):] = torch.tensor(r)
            mask[b, T - len(r):] = 1
        pix = torch.stack([self.pixels(os.path.join(image_folder, q["image"])) for q in questions])
        dt = next(self.model.parameters()).dtype
        return ids.to(self.device), mask.to(self.device), pix.to(self.device, dt)

    @torch.no_grad()
    def answer(self, questions, image_folder, batch_size, max_new_tokens, out_file, model_id):
        """model_vqa_loader's loop, batched; returns (seconds, answered, generated tokens, prompt tokens)."""
        t0 = time.perf_counter()
        generated = prompt_tokens = 0
        with open(out_file, "w") as f:
            for s in range(0, len(questions), batch_size):
                qs = questions[s:s + batch_size]
                ids, mask, pix = self.batch_inputs(qs, image_folder)
                prompt_tokens += int(mask.sum())
                out = self.model.generate(input_ids=ids, attention_mask=mask, pixel_values=pix, do_sample=False,
                                          num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=self.eos_id,
                                          pad_token_id=self.pad_id)
                lines = []
                for b, q in enumerate(qs):
                    new = out[b, ids.shape[1]:].tolist()
                    if self.eos_id in new:
                        new = new[:new.index(self.eos_id)]
                    generated += len(new)
                    text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
                    lines.append(json.dumps({"question_id": q["question_id"], "prompt": q["text"], "text": text,
                                             "answer_id": uuid.uuid4().hex[:22], "model_id": model_id,
                                             "metadata": {}}) + "\n")
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        return time.perf_counter() - t0, len(questions), generated, prompt_tokens


def check(a, check_file, questions, image_folder):
    """The first questions' prompt ids, pixels and last-position logits against vwlmm's; exit 2 on a mismatch."""
    from safetensors.torch import load_file
    ref = load_file(check_file)
    n = sum(1 for k in ref if k.startswith("ids_"))
    res = {"questions": n, "prompt_ids_equal": True, "pixels_max_abs_diff": 0.0, "logits_rel_err": 0.0}
    failures = []
    for k in range(n):
        q = questions[k]
        ids = a.prompt_ids(q["text"])
        want = ref[f"ids_{k}"].tolist()
        if ids != want:
            res["prompt_ids_equal"] = False
            failures.append(f"question {q['question_id']}: prompt ids differ: transformers side {ids[:40]}... "
                            f"({len(ids)}) vs vwlmm {want[:40]}... ({len(want)})")
        pix = a.pixels(os.path.join(image_folder, q["image"]))
        d = float((pix - ref[f"pixels_{k}"].reshape(pix.shape)).abs().max())
        res["pixels_max_abs_diff"] = max(res["pixels_max_abs_diff"], d)
        # the logits on vwlmm's own inputs: this compares the weights and the forward pass, nothing else
        full = torch.tensor([a.expand(want)], device=a.device)
        with torch.no_grad():
            logits = a.model(input_ids=full, attention_mask=torch.ones_like(full),
                             pixel_values=ref[f"pixels_{k}"].reshape(1, *pix.shape).to(a.device), use_cache=False).logits[0, -1].cpu()
        lr = ref[f"logits_{k}"]
        rel = float((logits - lr).abs().max() / lr.abs().max())
        res["logits_rel_err"] = max(res["logits_rel_err"], rel)
        res[f"argmax_{k}"] = [int(logits.argmax()), int(lr.argmax())]
    if res["pixels_max_abs_diff"] > 1e-4:
        failures.append(f"pixels differ by up to {res['pixels_max_abs_diff']:.3g}: a preprocessing difference")
    if res["logits_rel_err"] > 1e-4:
        failures.append(f"next-token logits differ (max |diff| / max |logit| = {res['logits_rel_err']:.3g}): the two "
                        "sides do not run the same weights or the same forward pass")
    if failures:
        print(json.dumps({"error": "; ".join(failures), "checks": res}))
        sys.exit(2)
    return res


@torch.no_grad()
def profile(a, questions, image_folder, steps):
    """The phases of one batch (benchmarks/answer_profile.ts): inputs (images + prompts), the tower + projector, the
    prefill (the whole forward less the tower), one decode step; milliseconds, the second of two passes."""
    cfg = a.model.config
    ms = {}
    for _ in range(2):
        t = time.perf_counter()
        ids, mask, pix = a.batch_inputs(questions, image_folder)
        ms["images"] = 1000 * (time.perf_counter() - t)
        t = time.perf_counter()
        a.model.model.get_image_features(pixel_values=pix, vision_feature_layer=cfg.vision_feature_layer,
                                         vision_feature_select_strategy=cfg.vision_feature_select_strategy)
        ms["tower"] = 1000 * (time.perf_counter() - t)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        t = time.perf_counter()
        out = a.model(input_ids=ids, attention_mask=mask, pixel_values=pix, position_ids=pos, use_cache=True,
                      logits_to_keep=1)
        ms["prefill"] = 1000 * (time.perf_counter() - t) - ms["tower"]
        t = time.perf_counter()
        for s in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            out = a.model(input_ids=nxt, attention_mask=mask, past_key_values=out.past_key_values,
                          position_ids=pos[:, -1:] + 1 + s, use_cache=True, logits_to_keep=1)
        ms["decodeStep"] = 1000 * (time.perf_counter() - t) / steps
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--image-folder", required=True)
    ap.add_argument("--answers-prefix", required=True, help="answers go to PREFIX.<budget>.jsonl")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--budgets", default="1,8", help="max_new_tokens of each timed run, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=16, help="questions answered (untimed) before the timed runs")
    ap.add_argument("--profile", type=int, default=0, help="time the phases of the first batch with this many decode "
                    "steps (benchmarks/answer_profile.ts) instead of answering")
    ap.add_argument("--check", help="vwlmm's prompt ids, pixels and logits for the first questions (safetensors)")
    ap.add_argument("--device", default="cpu", help="cuda: the check in float32 there, then the timed runs in --dtype")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    if o.device.startswith("cuda"):
        # the float32 check compares with vwlmm's CPU logits at 1e-4: cuDNN runs a float32 convolution (CLIP's patch
        # embedding) in TF32 by default, which alone moves the d512 model's logits by ~7e-4
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    import transformers
    with open(o.questions) as f:
        questions = [json.loads(l) for l in f if l.strip()]
    t0 = time.perf_counter()
    a = Answerer(o.model, o.device)
    load_s = time.perf_counter() - t0
    if o.profile:
        print(json.dumps(profile(a, questions[:o.batch_size], o.image_folder, o.profile)))
        return
    checks = check(a, o.check, questions, o.image_folder) if o.check else None
    if o.dtype == "bf16":  # after the float32 check: the weights the timed runs use, as LLaVA's eval loads them
        a.model.to(torch.bfloat16)
    model_id = os.path.basename(os.path.abspath(o.model))
    budgets = [int(b) for b in o.budgets.split(",")]
    if o.warmup > 0:
        a.answer(questions[:o.warmup], o.image_folder, o.batch_size, max(budgets), f"{o.answers_prefix}.warmup.jsonl", model_id)
    runs = []
    for budget in budgets:
        sec, n, gen, prompt = a.answer(questions, o.image_folder, o.batch_size, budget,
                                       f"{o.answers_prefix}.{budget}.jsonl", model_id)
        runs.append({"max_new_tokens": budget, "seconds": sec, "answered": n, "generated_tokens": gen,
                     "prompt_tokens": prompt})
    if a.device.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "device": o.device, "dtype": o.dtype,
                      "threads": torch.get_num_threads(), "attn_implementation": a.model.config._attn_implementation,
                      "load_seconds": load_s, "checks": checks, "runs": runs}))


if __name__ == "__main__":
    main()
