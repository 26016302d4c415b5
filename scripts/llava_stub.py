"""LLaVA's eval scripts run unchanged on the CPU with a stub model (for scripts/make_mmbench_fixtures.py and
scripts/make_prompt_fixtures.py; not a script itself).

install(DIR) makes `llava` an empty package holding only what the eval scripts import: llava/constants.py,
conversation.py and mm_utils.py loaded by path from the checkout DIR, llava.utils and llava.model.builder stubbed (no
model code is imported), shortuuid stubbed if it is not installed. Tensors asked onto the GPU stay on the CPU, and
DataLoaders build their items in this process (model_vqa_loader asks for 4 workers: in forked workers the prompts
would be recorded where this process cannot see them; the items and their order are the same).

StubModel stands in for load_pretrained_model's model: inside `stubbed(model, *modules)` every prompt the script
passes to tokenizer_image_token is recorded, with the input ids and image sizes generate() then gets, and generate()
answers the next of `answers`.
"""
import contextlib
import io
import os
import random
import runpy
import sys
import types

import torch
from transformers import AutoTokenizer

from load_by_path import load

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "sentencepiece")


def install(llava):
    """Sets up the `llava` package from the checkout `llava`; returns llava.mm_utils."""
    for name in ["llava", "llava.model", "llava.eval"]:
        m = types.ModuleType(name)
        m.__path__ = []
        sys.modules[name] = m
    load(os.path.join(llava, "llava", "constants.py"), "llava.constants")
    load(os.path.join(llava, "llava", "conversation.py"), "llava.conversation")
    mm_utils = load(os.path.join(llava, "llava", "mm_utils.py"), "llava.mm_utils")
    utils = types.ModuleType("llava.utils")
    utils.disable_torch_init = lambda: None
    sys.modules["llava.utils"] = utils
    builder = types.ModuleType("llava.model.builder")
    builder.load_pretrained_model = None  # set by stubbed()
    sys.modules["llava.model.builder"] = builder
    if "shortuuid" not in sys.modules:
        try:
            import shortuuid  # noqa: F401
        except ImportError:
            su = types.ModuleType("shortuuid")
            su.uuid = lambda: "".join(random.choice("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz") for _ in range(22))
            sys.modules["shortuuid"] = su
    torch.Tensor.cuda = lambda self, *a, **k: self
    to = torch.Tensor.to
    torch.Tensor.to = lambda self, *a, **k: to(self, *[x for x in a if x != "cuda"], **{n: v for n, v in k.items() if not (n == "device" and v == "cuda")})

    class InProcessLoader(torch.utils.data.DataLoader):
        def __init__(self, *a, **k):
            super().__init__(*a, **{**k, "num_workers": 0})

    torch.utils.data.DataLoader = InProcessLoader
    return mm_utils


def tokenizers():
    """The Llama fixture tokenizers (tests/fixtures/sentencepiece), by variant."""
    return {v: AutoTokenizer.from_pretrained(os.path.join(TOKENIZERS, v)) for v in ["legacy", "non_legacy"]}


class Processor:
    image_mean = [0.48145466, 0.4578275, 0.40821073]  # CLIP's: expand2square pads with it

    def preprocess(self, image, return_tensors):
        return {"pixel_values": torch.zeros(1, 3, 2, 2)}


class StubModel:
    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.records = tokenizer, list(answers), []
        self.config = types.SimpleNamespace(mm_use_im_start_end=False, image_aspect_ratio="pad")

    def generate(self, input_ids, images=None, image_sizes=None, **kw):
        self.records[-1]["input_ids"] = input_ids[0].tolist()
        self.records[-1]["image_size"] = None if image_sizes is None else list(image_sizes[0])
        return torch.tensor([self.tokenizer(self.answers.pop(0), add_special_tokens=False).input_ids])


@contextlib.contextmanager
def stubbed(model, *modules):
    """tokenizer_image_token (recording) and load_pretrained_model (giving `model`) in `modules`, restored after."""
    saved = [(m, n, getattr(m, n)) for m in modules for n in ["tokenizer_image_token", "load_pretrained_model"] if hasattr(m, n)]
    real = sys.modules["llava.mm_utils"].tokenizer_image_token

    def tokenizer_image_token(prompt, tok, *a, **k):
        model.records.append({"prompt": prompt})
        return real(prompt, tok, *a, **k)

    for m, n, _ in saved:
        setattr(m, n, tokenizer_image_token if n == "tokenizer_image_token" else lambda path, base, name: (model.tokenizer, model, Processor(), 2048))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm
            yield model
    finally:
        for m, n, v in saved:
            setattr(m, n, v)


def run_main(path, argv):
    """Runs the script at `path` as `python path argv...` would (its `if __name__ == "__main__"` part included)."""
    saved = sys.argv
    sys.argv = [os.path.basename(path)] + argv
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = saved
