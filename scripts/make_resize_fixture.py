#!/usr/bin/env python3
"""tests/fixtures/resize/: Pillow's bicubic resize of small RGB uint8 images, the reference that resizeRgb
(src/data/images.ts) must match byte for byte (tests/data/images.test.ts).

LLaVA-1.5's CLIPImageProcessor resizes with transformers' image_transforms.resize, which is
PIL.Image.resize((w, h), resample=BICUBIC) (reducing_gap None) on the uint8 RGB image; that is what is run here.

  python3 scripts/make_resize_fixture.py   # Pillow, numpy (the local package index); deterministic
  # e.g. python3 -m venv /tmp/resize-venv && /tmp/resize-venv/bin/pip install pillow numpy, then run it with that python

- cases.json: `inputs` (name, width, height, offset of its height x width x 3 bytes in resize.bin), `resizes` (input
  name, target width and height, offset of Pillow's result in resize.bin), `clip` (preprocessClip runs: input name,
  size, aspect, offset of the float32 [3, size, size] result in clip.bin), and the Pillow / numpy versions.
- resize.bin: the input images and Pillow's results, uint8 RGB, row-major.
- clip.bin: for `clip`, the whole CLIP preprocessing as LLaVA does it: expand2square on int(mean * 255) for 'pad',
  Pillow's resize of the shortest side to `size` (long side floor(size * long / short)), transformers' centre crop
  ((h - size) // 2, (w - size) // 2), then (x / 255 - mean) / std computed in float64 and stored as float32
  (little-endian), the arithmetic of preprocessClip's table.
"""
import json
import os

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'resize')
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

rng = np.random.default_rng(20240611)


def noise(w, h):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def edge(w, h):
    # hard edges both ways, a different one per channel: the worst case for a half-pixel shift
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[:, w // 2:, 0] = 255
    a[h // 3:, :, 1] = 255
    a[:, : w // 3, 2] = 200
    a[2 * h // 3:, :, 2] = 30
    return a


def dot(w, h, x, y):
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[y, x] = (255, 200, 100)
    return a


def gradient(w, h):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 255 // (w - 1), ys * 255 // (h - 1), (xs + ys) * 255 // (w + h - 2)], -1).astype(np.uint8)


INPUTS = {
    'noise_7x5': noise(7, 5),
    'noise_37x23': noise(37, 23),
    'noise_64x48': noise(64, 48),
    'edge_30x30': edge(30, 30),
    'dot_30x30': dot(30, 30, 10, 10),
    'gradient_37x23': gradient(37, 23),
    'noise_2x250': noise(2, 250),
}

# (input, width, height): upscale, downscale (> 4x too), one axis up and the other down, one axis unchanged (Pillow
# skips that pass), same size (Pillow returns a copy), 1-pixel outputs, a very tall image
RESIZES = [
    ('noise_7x5', 14, 10), ('noise_7x5', 11, 8), ('noise_7x5', 3, 2), ('noise_7x5', 1, 1), ('noise_7x5', 7, 5),
    ('noise_7x5', 7, 9), ('noise_7x5', 12, 5), ('noise_7x5', 3, 12), ('noise_7x5', 1, 7), ('noise_7x5', 20, 1),
    ('noise_37x23', 56, 35), ('noise_37x23', 23, 14), ('noise_37x23', 8, 5), ('noise_37x23', 50, 11),
    ('noise_37x23', 37, 23), ('noise_37x23', 36, 22),
    ('noise_64x48', 7, 5), ('noise_64x48', 15, 11), ('noise_64x48', 1, 1), ('noise_64x48', 3, 100),
    ('noise_64x48', 64, 2),
    ('edge_30x30', 45, 45), ('edge_30x30', 60, 60), ('edge_30x30', 7, 7), ('edge_30x30', 1, 1), ('edge_30x30', 30, 17),
    ('edge_30x30', 31, 29),
    ('dot_30x30', 60, 60), ('dot_30x30', 13, 45), ('dot_30x30', 5, 5),
    ('gradient_37x23', 74, 46), ('gradient_37x23', 9, 33), ('gradient_37x23', 2, 2),
    # more than 100 times taller than wide, shrunk in height: Pillow 12.3 resizes vertically first
    ('noise_2x250', 3, 20), ('noise_2x250', 4, 30), ('noise_2x250', 2, 40), ('noise_2x250', 1, 249),
    ('noise_2x250', 3, 251),
]

# (input, size, aspect): the short side upscaled and cropped; padded to a square, then downscaled
CLIP = [('gradient_37x23', 32, 'resize_crop'), ('noise_37x23', 30, 'pad')]


def pil_resize(a, w, h):
    return np.asarray(Image.fromarray(a, 'RGB').resize((w, h), Image.BICUBIC))


def preprocess_clip(a, size, aspect):
    img = Image.fromarray(a, 'RGB')
    if aspect == 'pad':  # LLaVA's expand2square
        fill = tuple(int(x * 255) for x in CLIP_MEAN)
        w, h = img.size
        s = max(w, h)
        sq = Image.new('RGB', (s, s), fill)
        sq.paste(img, ((s - w) // 2, (s - h) // 2))
        img = sq
    w, h = img.size
    tw, th = (size, size * h // w) if w <= h else (size * w // h, size)
    if (tw, th) != (w, h):
        img = img.resize((tw, th), Image.BICUBIC)
    x = np.asarray(img)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[top:top + size, left:left + size].astype(np.float64)
    x = (x / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    return x.transpose(2, 0, 1).astype('<f4')


os.makedirs(OUT, exist_ok=True)
blob, index = bytearray(), {'pillow': PIL.__version__, 'numpy': np.__version__, 'inputs': [], 'resizes': [], 'clip': []}
for name, a in INPUTS.items():
    index['inputs'].append({'name': name, 'width': a.shape[1], 'height': a.shape[0], 'offset': len(blob)})
    blob += a.tobytes()
for name, w, h in RESIZES:
    r = pil_resize(INPUTS[name], w, h)
    assert r.shape == (h, w, 3) and r.dtype == np.uint8
    index['resizes'].append({'input': name, 'width': w, 'height': h, 'offset': len(blob)})
    blob += r.tobytes()
clip_blob = bytearray()
for name, size, aspect in CLIP:
    index['clip'].append({'input': name, 'size': size, 'aspect': aspect, 'offset': len(clip_blob)})
    clip_blob += preprocess_clip(INPUTS[name], size, aspect).tobytes()

with open(os.path.join(OUT, 'resize.bin'), 'wb') as f:
    f.write(blob)
with open(os.path.join(OUT, 'clip.bin'), 'wb') as f:
    f.write(clip_blob)
with open(os.path.join(OUT, 'cases.json'), 'w') as f:
    json.dump(index, f, indent=1)
    f.write('\n')
print('wrote', os.path.abspath(OUT), len(blob), '+', len(clip_blob), 'bytes')
