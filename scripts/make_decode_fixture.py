#!/usr/bin/env python3
"""tests/fixtures/decode/: images that decoders read differently and what Pillow's convert('RGB') makes of them, the
reference of loadImage (src/data/images.ts; tests/data/images.test.ts). LLaVA's loaders open every image with
Image.open(f).convert('RGB'): a 16-bit greyscale PNG or TIFF is Pillow's mode I;16, whose values are clipped to 255;
16-bit RGB, RGBA and grey+alpha PNGs are read from each sample's high byte; an embedded ICC profile is ignored (no
colour management); a CMYK JPEG goes through Pillow's own cmyk2rgb formula.

  python3 scripts/make_decode_fixture.py   # Pillow, numpy (the local package index); deterministic

- <name>.png / .tif: 9 x 7 images whose first samples are the edge values (0, 1, 127, 128, 255, 256, 257, 32767,
  32768, 32896, 65279, 65280, 65534, 65535), the rest random; the PNGs written by hand (big-endian samples), so that
  the bit depth and colour type are the ones named.
- grey16_miniswhite.tif, signed16_le.tif, signed16_be.tif: single-channel 16-bit TIFFs written by hand, MinIsWhite
  (Pillow reads the values uninverted) and signed (Pillow's mode I, clipped at 0 too).
- grey_icc22.png, rgb_icc.png, rgb_icc.jpg: 8-bit images with a hand-made ICC profile (gamma 2.2; Adobe RGB-like
  primaries for RGB), which a colour-managed decoder would apply; cmyk.jpg: Pillow's own CMYK JPEG of a random image.
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


def tiff16(path, a, byte_order, photometric, sample_format):
    """A one-strip, uncompressed single-channel 16-bit TIFF written by hand (photometric 0: MinIsWhite; format 2: signed)."""
    h, w = a.shape
    data = a.astype(byte_order + ('i2' if sample_format == 2 else 'u2')).tobytes()
    entries = [(256, 3, w), (257, 3, h), (258, 3, 16), (259, 3, 1), (262, 3, photometric), (273, 4, 0), (277, 3, 1),
               (278, 3, h), (279, 4, len(data)), (339, 3, sample_format)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(byte_order + 'H', len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        ifd += struct.pack(byte_order + 'HHIHH', tag, kind, 1, value, 0) if kind == 3 else struct.pack(byte_order + 'HHII', tag, kind, 1, value)
    with open(path, 'wb') as f:
        f.write((b'II*\0' if byte_order == '<' else b'MM\0*') + struct.pack(byte_order + 'I', 8) + ifd + struct.pack(byte_order + 'I', 0) + data)


def icc_profile(colour_space):
    """A minimal ICC v2 display profile: gamma-2.2 curves, D50 white; RGB with Adobe RGB-like (D50) primaries."""
    def xyz(x, y, z):
        return b'XYZ ' + b'\0' * 4 + b''.join(struct.pack('>i', int(round(v * 65536))) for v in (x, y, z))
    text = b'test\0'
    desc = b'desc' + b'\0' * 4 + struct.pack('>I', len(text)) + text + b'\0' * 8 + b'\0' * 3 + b'\0' * 67
    curve = b'curv' + b'\0' * 4 + struct.pack('>I', 1) + struct.pack('>H', int(2.2 * 256)) + b'\0\0'
    tags = [(b'desc', desc), (b'wtpt', xyz(0.9642, 1.0, 0.8249)), (b'cprt', b'text' + b'\0' * 4 + b'none\0' + b'\0' * 3)]
    if colour_space == b'RGB ':
        tags += [(b'rXYZ', xyz(0.6097, 0.3111, 0.0195)), (b'gXYZ', xyz(0.2053, 0.6257, 0.0609)), (b'bXYZ', xyz(0.1492, 0.0632, 0.7446)),
                 (b'rTRC', curve), (b'gTRC', curve), (b'bTRC', curve)]
    else:
        tags += [(b'kTRC', curve)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b'', b''
    for sig, data in tags:
        while (start + len(body)) % 4:
            body += b'\0'
        table += sig + struct.pack('>II', start + len(body), len(data))
        body += data
    header = (struct.pack('>I', start + len(body)) + b'lcms' + struct.pack('>I', 0x02100000) + b'mntr' + colour_space + b'XYZ '
              + b'\0' * 12 + b'acsp' + b'\0' * 24 + struct.pack('>I', 0) + struct.pack('>iii', int(0.9642 * 65536), 65536, int(0.8249 * 65536))
              + b'\0' * 48)
    assert len(header) == 128
    return header + struct.pack('>I', len(tags)) + table + body


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
    rgb8 = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    Image.fromarray(rgb8[..., 0]).save(os.path.join(OUT, 'grey_icc22.png'), icc_profile=icc_profile(b'GRAY'))
    Image.fromarray(rgb8).save(os.path.join(OUT, 'rgb_icc.png'), icc_profile=icc_profile(b'RGB '))
    Image.fromarray(rgb8).save(os.path.join(OUT, 'rgb_icc.jpg'), icc_profile=icc_profile(b'RGB '), quality=95)
    Image.fromarray(rgb8).convert('CMYK').save(os.path.join(OUT, 'cmyk.jpg'), quality=95)
    files += ['grey_icc22.png', 'rgb_icc.png', 'rgb_icc.jpg', 'cmyk.jpg']
    grey = samples(1)[..., 0]
    grey.reshape(-1)[14:40] = rng.integers(0, 300, 26)  # values around 255, where Pillow's clip shows
    tiff16(os.path.join(OUT, 'grey16_miniswhite.tif'), grey, '<', 0, 1)  # (Pillow does not open a big-endian one)
    signed = (grey.astype(np.int32) - 32768).astype(np.int16)
    signed.reshape(-1)[14:40] = rng.integers(-300, 300, 26)
    for byte_order, name in (('<', 'le'), ('>', 'be')):
        tiff16(os.path.join(OUT, f'signed16_{name}.tif'), signed, byte_order, 1, 2)
    files += ['grey16_miniswhite.tif', 'signed16_le.tif', 'signed16_be.tif']
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
