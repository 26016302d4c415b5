// Independent float64 references of the engine ops (native/core/ops.def), written as plain loops
// from the math, not from the C++ kernels. Backward references are vector-Jacobian products through
// EXPLICIT Jacobians (each entry dy_i/dx_k written down from the forward by the chain rule), never the
// closed forms the kernels use, so a wrong closed form cannot hide in both; tests also check them against
// central finite differences of the forward here (finiteDifference in ./reference).
//
// Where a result is a sum whose terms can cancel, a magnitude (...Mag) comes with it: the same sum over
// absolute values of every term (Jacobian entries split into their terms too), which bounds the float32
// rounding error (see tests/support/reference.ts).
export type F64 = Float64Array;
type Arr = ArrayLike<number>;

// ------------------------------------------------------------------------------------------ matmul
export interface MatmulParams {
  batch: number; M: number; N: number; K: number;
  transA: boolean; transB: boolean; hasBias: boolean; accumulate: boolean;
  strideA: number; strideB: number; strideC: number; alpha: number;
}

/** C[b] (=|+=) alpha op(A[b]) op(B[b]) + bias for b in order; C0 is the initial C (elements outside the batches stay). */
export function matmulRef(A: Arr, B: Arr, bias: Arr | null, C0: Arr, p: MatmulParams): { C: F64; mag: F64 } {
  const C = Float64Array.from(C0), mag = Float64Array.from(C0, Math.abs);
  for (let b = 0; b < p.batch; b++) {
    for (let i = 0; i < p.M; i++)
      for (let j = 0; j < p.N; j++) {
        let s = 0, sa = 0;
        for (let k = 0; k < p.K; k++) {
          const a = p.transA ? A[b * p.strideA + k * p.M + i] : A[b * p.strideA + i * p.K + k];
          const w = p.transB ? B[b * p.strideB + j * p.K + k] : B[b * p.strideB + k * p.N + j];
          s += a * w;
          sa += Math.abs(a * w);
        }
        const at = b * p.strideC + i * p.N + j;
        const bv = bias ? bias[j] : 0;
        // Batches apply in order, so overlapping outputs (strideC < M*N) see the earlier batches.
        C[at] = (p.accumulate ? C[at] : 0) + p.alpha * s + bv;
        mag[at] = (p.accumulate ? mag[at] : 0) + Math.abs(p.alpha) * sa + Math.abs(bv);
      }
  }
  return { C, mag };
}

/** y (=|+=) column sums of X [R, C]. */
export function sumRowsRef(X: Arr, R: number, C: number, y0: Arr | null): { y: F64; mag: F64 } {
  const y = new Float64Array(C), mag = new Float64Array(C);
  for (let j = 0; j < C; j++) {
    y[j] = y0 ? y0[j] : 0;
    mag[j] = Math.abs(y[j]);
  }
  for (let r = 0; r < R; r++)
    for (let j = 0; j < C; j++) {
      y[j] += X[r * C + j];
      mag[j] += Math.abs(X[r * C + j]);
    }
  return { y, mag };
}

// ------------------------------------------------------------------------------------------ rows
/** dst[i] = src[idx[i]] (rows of C). */
export function gatherRowsRef(src: Arr, idx: Arr, C: number): F64 {
  const out = new Float64Array(idx.length * C);
  for (let i = 0; i < idx.length; i++) for (let j = 0; j < C; j++) out[i * C + j] = src[idx[i] * C + j];
  return out;
}

/** dSrc (+=) the adjoint of gatherRowsRef: dSrc[idx[i]] += dDst[i]. */
export function scatterAddRowsRef(dDst: Arr, idx: Arr, S: number, C: number, dSrc0: Arr): { dSrc: F64; mag: F64 } {
  const dSrc = Float64Array.from(dSrc0), mag = Float64Array.from(dSrc0, Math.abs);
  for (let i = 0; i < idx.length; i++)
    for (let j = 0; j < C; j++) {
      dSrc[idx[i] * C + j] += dDst[i * C + j];
      mag[idx[i] * C + j] += Math.abs(dDst[i * C + j]);
    }
  void S;
  return { dSrc, mag };
}

export interface Copy2dParams { rows: number; cols: number; srcStride: number; dstStride: number; srcOffset: number; dstOffset: number; accumulate: boolean }

export function copy2dRef(src: Arr, dst0: Arr, p: Copy2dParams): F64 {
  const dst = Float64Array.from(dst0);
  for (let r = 0; r < p.rows; r++)
    for (let j = 0; j < p.cols; j++) {
      const d = p.dstOffset + r * p.dstStride + j, s = src[p.srcOffset + r * p.srcStride + j];
      dst[d] = p.accumulate ? dst[d] + s : s;
    }
  return dst;
}

/** img [B, Cin, H, W] -> cols [B, P, Cin*p*p]: patch (py, px) is row py*(W/p) + px, column c*p*p + ky*p + kx. */
export function im2colRef(img: Arr, B: number, Cin: number, H: number, W: number, p: number): F64 {
  const Hp = H / p, Wp = W / p, K = Cin * p * p;
  const out = new Float64Array(B * Hp * Wp * K);
  for (let b = 0; b < B; b++)
    for (let py = 0; py < Hp; py++)
      for (let px = 0; px < Wp; px++)
        for (let c = 0; c < Cin; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              out[((b * Hp + py) * Wp + px) * K + (c * p + ky) * p + kx] = img[((b * Cin + c) * H + py * p + ky) * W + px * p + kx];
  return out;
}

/** Conv2d, stride = kernel = p, no padding: out [B, D, H/p, W/p] from weight [D, Cin, p, p] and bias [D]. */
export function patchConvRef(img: Arr, weight: Arr, bias: Arr, B: number, Cin: number, H: number, W: number, p: number, D: number): F64 {
  const Hp = H / p, Wp = W / p;
  const out = new Float64Array(B * D * Hp * Wp);
  for (let b = 0; b < B; b++)
    for (let d = 0; d < D; d++)
      for (let oy = 0; oy < Hp; oy++)
        for (let ox = 0; ox < Wp; ox++) {
          let s = bias[d];
          for (let c = 0; c < Cin; c++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++)
                s += weight[((d * Cin + c) * p + ky) * p + kx] * img[((b * Cin + c) * H + oy * p + ky) * W + ox * p + kx];
          out[((b * D + d) * Hp + oy) * Wp + ox] = s;
        }
  return out;
}

// ------------------------------------------------------------------------------------------ norms
export function layerNormRef(x: Arr, w: Arr, b: Arr, R: number, C: number, eps: number): { y: F64; mean: F64; rstd: F64 } {
  const y = new Float64Array(R * C), mean = new Float64Array(R), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let j = 0; j < C; j++) s += x[r * C + j];
    const mu = s / C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (x[r * C + j] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < C; j++) y[r * C + j] = (x[r * C + j] - mu) * rs * w[j] + b[j];
  }
  return { y, mean, rstd };
}

/**
 * VJP of layerNormRef. Row Jacobian from the chain rule: with mu = mean(x), var = mean((x - mu)^2),
 * r = (var + eps)^-1/2: d mu/dx_k = 1/C, d var/dx_k = 2 (x_k - mu)/C (the sum of (x_i - mu) being 0),
 * dr/dx_k = -r^3 (x_k - mu)/C, and dy_i/dx_k = w_i [r (delta_ik - 1/C) + (x_i - mu) dr/dx_k].
 */
export function layerNormVjpRef(dy: Arr, x: Arr, w: Arr, R: number, C: number, eps: number): { dx: F64; dw: F64; db: F64; dxMag: F64; dwMag: F64; dbMag: F64 } {
  const dx = new Float64Array(R * C), dxMag = new Float64Array(R * C);
  const dw = new Float64Array(C), db = new Float64Array(C), dwMag = new Float64Array(C), dbMag = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let j = 0; j < C; j++) s += x[r * C + j];
    const mu = s / C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (x[r * C + j] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let k = 0; k < C; k++) {
      const drdxk = (-(rs ** 3) * (x[r * C + k] - mu)) / C;
      let acc = 0, mag = 0;
      for (let i = 0; i < C; i++) {
        const t1 = rs * ((i === k ? 1 : 0) - 1 / C), t2 = (x[r * C + i] - mu) * drdxk;
        acc += dy[r * C + i] * w[i] * (t1 + t2);
        mag += Math.abs(dy[r * C + i] * w[i]) * (Math.abs(t1) + Math.abs(t2));
      }
      dx[r * C + k] = acc;
      dxMag[r * C + k] = mag;
    }
    for (let j = 0; j < C; j++) {
      const xhat = (x[r * C + j] - mu) * rs;
      dw[j] += dy[r * C + j] * xhat;
      dwMag[j] += Math.abs(dy[r * C + j] * xhat);
      db[j] += dy[r * C + j];
      dbMag[j] += Math.abs(dy[r * C + j]);
    }
  }
  return { dx, dw, db, dxMag, dwMag, dbMag };
}

export function rmsNormRef(x: Arr, w: Arr, R: number, C: number, eps: number): { y: F64; rstd: F64 } {
  const y = new Float64Array(R * C), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < C; j++) ss += x[r * C + j] ** 2;
    const rs = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = rs;
    for (let j = 0; j < C; j++) y[r * C + j] = x[r * C + j] * rs * w[j];
  }
  return { y, rstd };
}

/** VJP of rmsNormRef: dy_i/dx_k = w_i (r delta_ik + x_i dr/dx_k), dr/dx_k = -r^3 x_k / C. */
export function rmsNormVjpRef(dy: Arr, x: Arr, w: Arr, R: number, C: number, eps: number): { dx: F64; dw: F64; dxMag: F64; dwMag: F64 } {
  const dx = new Float64Array(R * C), dxMag = new Float64Array(R * C), dw = new Float64Array(C), dwMag = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < C; j++) ss += x[r * C + j] ** 2;
    const rs = 1 / Math.sqrt(ss / C + eps);
    for (let k = 0; k < C; k++) {
      const drdxk = (-(rs ** 3) * x[r * C + k]) / C;
      let acc = 0, mag = 0;
      for (let i = 0; i < C; i++) {
        const t1 = rs * (i === k ? 1 : 0), t2 = x[r * C + i] * drdxk;
        acc += dy[r * C + i] * w[i] * (t1 + t2);
        mag += Math.abs(dy[r * C + i] * w[i]) * (Math.abs(t1) + Math.abs(t2));
      }
      dx[r * C + k] = acc;
      dxMag[r * C + k] = mag;
    }
    for (let j = 0; j < C; j++) {
      dw[j] += dy[r * C + j] * x[r * C + j] * rs;
      dwMag[j] += Math.abs(dy[r * C + j] * x[r * C + j] * rs);
    }
  }
  return { dx, dw, dxMag, dwMag };
}

// ------------------------------------------------------------------------------------------ rope
/** Angle of pair j at position pos: pos * theta^(-2j/Dh). */
export function ropeAngle(pos: number, j: number, Dh: number, theta: number): number {
  return pos * Math.pow(theta, (-2 * j) / Dh);
}

/**
 * Visits every rotated pair of X [B, T, H, Dh] (elements o + j and o + j + Dh/2) with the pair's 2x2 Jacobian
 * J = [[c, -s], [s, c]] at its position.
 */
function forEachRopePair(
  B: number, T: number, H: number, Dh: number, posOffset: number, theta: number,
  visit: (i0: number, i1: number, J: number[][]) => void,
): void {
  const half = Dh / 2;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * Dh;
        for (let j = 0; j < half; j++) {
          const a = ropeAngle(posOffset + t, j, Dh, theta), c = Math.cos(a), s = Math.sin(a);
          visit(o + j, o + j + half, [[c, -s], [s, c]]);
        }
      }
}

/** HF LLaMA rotate_half RoPE of X [B, T, H, Dh]: (x_j, x_{j+h}) -> J (x_j, x_{j+h}). */
export function ropeRef(x: Arr, B: number, T: number, H: number, Dh: number, posOffset: number, theta: number): F64 {
  const y = new Float64Array(B * T * H * Dh);
  forEachRopePair(B, T, H, Dh, posOffset, theta, (i0, i1, J) => {
    y[i0] = J[0][0] * x[i0] + J[0][1] * x[i1];
    y[i1] = J[1][0] * x[i0] + J[1][1] * x[i1];
  });
  return y;
}

/** VJP of ropeRef: J^T dy. */
export function ropeVjpRef(dy: Arr, B: number, T: number, H: number, Dh: number, posOffset: number, theta: number): F64 {
  const dx = new Float64Array(B * T * H * Dh);
  forEachRopePair(B, T, H, Dh, posOffset, theta, (i0, i1, J) => {
    dx[i0] = J[0][0] * dy[i0] + J[1][0] * dy[i1];
    dx[i1] = J[0][1] * dy[i0] + J[1][1] * dy[i1];
  });
  return dx;
}

// ------------------------------------------------------------------------------------------ softmax
export function softmaxRef(x: Arr, R: number, C: number): F64 {
  const y = new Float64Array(R * C);
  for (let r = 0; r < R; r++) {
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, x[r * C + j]);
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(x[r * C + j] - m);
    for (let j = 0; j < C; j++) y[r * C + j] = Math.exp(x[r * C + j] - m) / s;
  }
  return y;
}

/** VJP through the explicit softmax Jacobian dy_i/dx_k = y_i (delta_ik - y_k), y = softmax(x). */
export function softmaxVjpRef(dy: Arr, y: Arr, R: number, C: number): { dx: F64; mag: F64 } {
  const dx = new Float64Array(R * C), mag = new Float64Array(R * C);
  for (let r = 0; r < R; r++)
    for (let k = 0; k < C; k++) {
      let acc = 0, m = 0;
      for (let i = 0; i < C; i++) {
        const yi = y[r * C + i], d = i === k ? 1 : 0, yk = y[r * C + k];
        acc += dy[r * C + i] * yi * (d - yk);
        m += Math.abs(dy[r * C + i]) * yi * (d + yk);
      }
      dx[r * C + k] = acc;
      mag[r * C + k] = m;
    }
  return { dx, mag };
}

// ------------------------------------------------------------------------------------------ activations
/** erf in float64: 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1)), all terms positive. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax > 6) return Math.sign(x);
  let term = ax, sum = ax;
  for (let n = 1; n < 500; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const GELU_K = Math.sqrt(2 / Math.PI), GELU_C = 0.044715;

/** Activation kinds of the engine: 0 gelu (erf), 1 gelu (tanh), 2 quick_gelu, 3 silu. */
export const activationNames = ['gelu_erf', 'gelu_tanh', 'quick_gelu', 'silu'] as const;

export function activationRef(kind: number, x: number): number {
  switch (kind) {
    case 0: return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 1: return 0.5 * x * (1 + Math.tanh(GELU_K * (x + GELU_C * x ** 3)));
    case 2: return x * sigmoid(1.702 * x);
    default: return x * sigmoid(x);
  }
}

/** d activation / dx, differentiated from the definitions above (tanh form for kind 1). */
export function activationGradRef(kind: number, x: number): number {
  switch (kind) {
    case 0: return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 1: {
      const t = Math.tanh(GELU_K * (x + GELU_C * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * x * x);
    }
    case 2: {
      const s = sigmoid(1.702 * x);
      return s + x * 1.702 * s * (1 - s);
    }
    default: {
      const s = sigmoid(x);
      return s + x * s * (1 - s);
    }
  }
}

export const siluRef = (g: number) => g * sigmoid(g);
export const siluGradRef = (g: number) => sigmoid(g) * (1 + g * (1 - sigmoid(g)));

// ------------------------------------------------------------------------------------------ AdamW
export interface AdamWParams { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; gradScale: number }

/**
 * One torch.optim.AdamW step (decoupled decay, bias correction) in float64; p, m, v updated in place.
 * Returns condition-aware magnitudes, the same sums over absolute values (see tests/support/reference.ts):
 * mMag = beta1 |m| + (1 - beta1) |g'|, which m = beta1 m + (1 - beta1) g' may cancel down from, and
 * updMag, the magnitude of the update p_new - p_old with mMag in place of m.
 */
export function adamwRef(p: F64, m: F64, v: F64, g: Arr, step: number, o: AdamWParams): { mMag: F64; updMag: F64 } {
  const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
  const mMag = new Float64Array(p.length), updMag = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * o.gradScale;
    mMag[i] = o.beta1 * Math.abs(m[i]) + (1 - o.beta1) * Math.abs(gi);
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
    const denom = Math.sqrt(v[i] / bc2) + o.eps;
    updMag[i] = o.lr * o.weightDecay * Math.abs(p[i]) + (o.lr * (mMag[i] / bc1)) / denom;
    p[i] *= 1 - o.lr * o.weightDecay;
    p[i] -= (o.lr * (m[i] / bc1)) / denom;
  }
  return { mMag, updMag };
}

// ------------------------------------------------------------------------------------------ helpers
/** sum_i g_i y_i: the scalar whose gradient is the VJP with cotangent g. */
export function dotF64(g: Arr, y: Arr): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * y[i];
  return s;
}

/** A few distinct coordinates in [0, n) (all of them when n <= count). */
export function someCoords(n: number, count: number, next: () => number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const s = new Set<number>();
  while (s.size < count) s.add(Math.floor(next() * n));
  return [...s];
}
