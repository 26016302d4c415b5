#!/usr/bin/env python3
"""tests/fixtures/schedule/cosine.json: the learning rate of every optimizer step under transformers'
get_cosine_schedule_with_warmup, as HF Trainer (and so LLaVA's train.py) uses it: num_warmup_steps =
ceil(num_training_steps * warmup_ratio), the lr of update k read from the optimizer before its k-th step, the
scheduler stepped after it.

  python3 scripts/make_schedule_fixture.py    # torch, transformers (5.18 here); deterministic
"""
import json
import math
import os

import torch
import transformers
from transformers import get_cosine_schedule_with_warmup

CASES = [(1, 0.0, 2e-5), (1, 0.03, 2e-5), (2, 0.5, 1e-3), (10, 0.0, 1e-3), (10, 0.03, 2e-5), (100, 0.03, 2e-3),
         (37, 0.1, 3e-3), (2000, 0.03, 3e-3), (5, 1.0, 1e-3)]

out = []
for total, ratio, base in CASES:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=base)
    warm = math.ceil(total * ratio)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warm, num_training_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out.append({"totalSteps": total, "warmupRatio": ratio, "baseLr": base, "warmupSteps": warm, "lr": lrs})

path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "schedule", "cosine.json")
with open(path, "w") as f:
    json.dump({"transformers": transformers.__version__, "cases": out}, f)
print("wrote", os.path.abspath(path))
