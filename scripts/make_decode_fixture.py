#!/usr/bin/env python3
"""tests/fixtures/decode/: 16-bit images and what Pillow's convert('RGB') makes of them, the reference of loadImage's
8-bit reduction (src/data/images.ts; tests/data/images.test.ts). LLaVA's loaders open every image with
Image.open(f).convert('RGB'): a 16-bit greyscale PNG or TIFF is Pillow's mode I;16, whose values are clipped to 255;
16-bit RGB, RGBA and grey+alpha PNGs are read from each sample's high byte.

  python3 scripts/make_decode_fixture.py   # Pillow, numpy (the local package index); deterministic

- <name>.png / .tif: 9 x 7 images whose first samples are the edge values (0, 1, 127, 128, 255, 256, 257, 32767,
  32768, 32896, 65279, 65280, 65534, 65535), the rest random; the PNGs written by hand (big-endian samples), so that
  the bit depth and colour type are the ones named.
- cases.json: each file, its Pillow mode, and the offset of Pillow's convert('RGB') bytes (H x W x 3) in rgb.bin.
"""
import json
import os
import struct
import zlib

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'decode')
rng = np.random.default_rng(20261208)
EDGES = np.array([0, 1, 127, 128, 255, 256, 257, 32767, 32768, 32896, 65279, 65280, 65534, 65535], dtype=np.uint16)


def png16(path, a, colour_type, trns=None):
    h, w = a.shape[:2]
    raw = b''.join(b'\x00' + a[y].astype('>u2').tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)

    chunks = [chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, colour_type, 0, 0, 0))]
    if trns is not None:
        chunks.append(chunk(b'tRNS', struct.pack('>H', trns)))
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b''.join(chunks) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def samples(channels):
    a = rng.integers(0, 65536, size=(7, 9, channels), dtype=np.uint16)
    a.reshape(-1)[:len(EDGES)] = EDGES
    return a


def main():
    os.makedirs(OUT, exist_ok=True)
    files = []
    for name, colour_type, channels, trns in [('grey16', 0, 1, None), ('grey16_trns', 0, 1, 0), ('grey_alpha16', 4, 2, None), ('rgb16', 2, 3, None), ('rgba16', 6, 4, None)]:
        png16(os.path.join(OUT, name + '.png'), samples(channels), colour_type, trns)
        files.append(name + '.png')
    Image.open(os.path.join(OUT, 'grey16.png')).save(os.path.join(OUT, 'grey16.tif'))
    files.append('grey16.tif')
    cases, blob = [], bytearray()
    for f in files:
        im = Image.open(os.path.join(OUT, f))
        rgb = np.asarray(im.convert('RGB'), dtype=np.uint8)
        cases.append({'file': f, 'mode': im.mode, 'width': im.width, 'height': im.height, 'offset': len(blob)})
        blob += rgb.tobytes()
    with open(os.path.join(OUT, 'rgb.bin'), 'wb') as f:
        f.write(bytes(blob))
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump({'pillow': PIL.__version__, 'numpy': np.__version__, 'cases': cases}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
