// bfloat16 <-> float32 on the host (both addons store bf16 as raw 16-bit words; native/core/bf16.h is the
// same conversion in C++).
// Rounding is to nearest even, NaN stays NaN, as torch's .to(torch.bfloat16).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToBf16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0) {
      out[i] = (b >>> 16) | 0x0040; // quiet NaN
    } else {
      out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return out;
}

export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** The float32 value nearest to x after a round trip through bfloat16. */
export function roundToBf16(x: number): number {
  f32[0] = x;
  if (Number.isNaN(x)) return x;
  const b = u32[0];
  u32[0] = (((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff) << 16;
  return f32[0];
}
