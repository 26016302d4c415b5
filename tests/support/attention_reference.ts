// Independent float64 reference of attention_forward / attention_backward (native/core/ops.def),
// written from the math with nothing blockwise: for every (batch, query head) the FULL [Tq, Tk] score
// matrix is materialised, softmaxed over the visible keys and multiplied out. The backward goes through
// the generic softmax Jacobian (dS = P * (G - <P, G>) with G = dL/dP = dO V^T) rather than the kernels'
// D = rowsum(dO * O) shortcut, and is itself checked against finite differences of attentionLoss.
//
// Layouts: Q [B, Tq, Hq, Dh], K, V [B, Tk, Hkv, Dh], mask [B, Tk] (1 visible, 0 padding) or null,
// O [B, Tq, Hq, Dh], lse [B, Hq, Tq]. Query head h reads kv head floor(h / (Hq / Hkv)). When causal,
// query t (absolute position Tk - Tq + t) sees keys j <= Tk - Tq + t. A row that sees no key has O = 0,
// lse = -Infinity and no gradient.
//
// Magnitudes ("...Mag") are the same sums with every term replaced by its absolute value, the scale a
// float32 evaluation error is proportional to (see tests/support/reference.ts). oMagS and the S-terms of
// the gradient magnitudes add the first-order effect of rounding the scores themselves: exp amplifies an
// absolute error eps * sum_d |scale q_d k_d| of a score into a relative error of P, which matters once the
// scores are large (x100).
export type F64 = Float64Array;

export interface AttnDims {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  Dh: number;
  causal: boolean;
  scale: number;
}

const qIdx = (d: AttnDims, b: number, t: number, h: number) => ((b * d.Tq + t) * d.Hq + h) * d.Dh;
const kIdx = (d: AttnDims, b: number, j: number, g: number) => ((b * d.Tk + j) * d.Hkv + g) * d.Dh;

function visibleKey(d: AttnDims, mask: ArrayLike<number> | null, b: number, t: number, j: number): boolean {
  if (mask && mask[b * d.Tk + j] === 0) return false;
  return !d.causal || j <= d.Tk - d.Tq + t;
}

interface HeadForward {
  P: F64; // [Tq, Tk], 0 where not visible
  S: F64; // [Tq, Tk] scores (NaN where not visible)
  sMag: F64; // [Tq, Tk] sum_d |scale q_d k_d|
  lse: F64; // [Tq]
}

/** Scores, probabilities and lse of one (batch, query head), materialised in full. */
function headForward(q: ArrayLike<number>, k: ArrayLike<number>, mask: ArrayLike<number> | null, d: AttnDims, b: number, h: number): HeadForward {
  const g = Math.floor(h / (d.Hq / d.Hkv));
  const { Tq, Tk, Dh } = d;
  const S = new Float64Array(Tq * Tk).fill(NaN), P = new Float64Array(Tq * Tk), sMag = new Float64Array(Tq * Tk);
  const lse = new Float64Array(Tq);
  for (let t = 0; t < Tq; t++) {
    const qo = qIdx(d, b, t, h);
    let m = -Infinity;
    for (let j = 0; j < Tk; j++) {
      if (!visibleKey(d, mask, b, t, j)) continue;
      const ko = kIdx(d, b, j, g);
      let s = 0, sm = 0;
      for (let e = 0; e < Dh; e++) {
        s += q[qo + e] * k[ko + e];
        sm += Math.abs(q[qo + e] * k[ko + e]);
      }
      S[t * Tk + j] = d.scale * s;
      sMag[t * Tk + j] = Math.abs(d.scale) * sm;
      m = Math.max(m, d.scale * s);
    }
    if (m === -Infinity) {
      lse[t] = -Infinity;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < Tk; j++) if (visibleKey(d, mask, b, t, j)) sum += Math.exp(S[t * Tk + j] - m);
    lse[t] = m + Math.log(sum);
    for (let j = 0; j < Tk; j++) if (visibleKey(d, mask, b, t, j)) P[t * Tk + j] = Math.exp(S[t * Tk + j] - lse[t]);
  }
  return { P, S, sMag, lse };
}

/**
 * O, lse and magnitudes: oMag = P |V|; oMagS adds the score-rounding term; lseMagS = max(1, |lse|,
 * sum_j P_j sMag_j) (the lse error a score error eps * sMag causes).
 */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, mask: ArrayLike<number> | null, d: AttnDims) {
  const { B, Tq, Tk, Hq, Dh } = d;
  const o = new Float64Array(B * Tq * Hq * Dh), oMag = new Float64Array(o.length), oMagS = new Float64Array(o.length);
  const lse = new Float64Array(B * Hq * Tq), lseMagS = new Float64Array(B * Hq * Tq);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / (Hq / d.Hkv));
      const f = headForward(q, k, mask, d, b, h);
      for (let t = 0; t < Tq; t++) {
        lse[(b * Hq + h) * Tq + t] = f.lse[t];
        let ps = 0;
        for (let j = 0; j < Tk; j++) if (f.P[t * Tk + j] > 0) ps += f.P[t * Tk + j] * f.sMag[t * Tk + j];
        lseMagS[(b * Hq + h) * Tq + t] = Math.max(1, Math.abs(f.lse[t]), ps);
        const oo = qIdx(d, b, t, h);
        for (let j = 0; j < Tk; j++) {
          const p = f.P[t * Tk + j];
          if (p === 0) continue;
          const vo = kIdx(d, b, j, g);
          for (let e = 0; e < Dh; e++) {
            o[oo + e] += p * v[vo + e];
            oMag[oo + e] += p * Math.abs(v[vo + e]);
          }
        }
        for (let j = 0; j < Tk; j++) {
          const p = f.P[t * Tk + j];
          if (p === 0) continue;
          const vo = kIdx(d, b, j, g);
          for (let e = 0; e < Dh; e++) oMagS[oo + e] += p * f.sMag[t * Tk + j] * Math.abs(v[vo + e] - o[oo + e]);
        }
        for (let e = 0; e < Dh; e++) oMagS[oo + e] += oMag[oo + e];
      }
    }
  return { o, lse, oMag, oMagS, lseMagS };
}

/** Backprop of g = dL/dP through one softmax row over its visible entries: P * (g - <P, g>). */
function softmaxRowBackward(P: F64, g: F64, off: number, n: number): F64 {
  let dot = 0;
  for (let j = 0; j < n; j++) dot += P[off + j] * g[off + j];
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) out[j] = P[off + j] * (g[off + j] - dot);
  return out;
}

/** dQ, dK, dV of L with dL/dO = dO, their magnitudes (...Mag) and score-aware magnitudes (...MagS). */
export function attentionBackwardRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, mask: ArrayLike<number> | null, dO: ArrayLike<number>, d: AttnDims) {
  const { B, Tq, Tk, Hq, Dh } = d;
  const sc = d.scale, as = Math.abs(sc);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const dqMag = new Float64Array(q.length), dkMag = new Float64Array(k.length), dvMag = new Float64Array(v.length);
  const dqMagS = new Float64Array(q.length), dkMagS = new Float64Array(k.length), dvMagS = new Float64Array(v.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / (Hq / d.Hkv));
      const f = headForward(q, k, mask, d, b, h);
      // G = dL/dP = dO V^T over all [Tq, Tk] (with magnitude), then dS through the softmax Jacobian.
      const G = new Float64Array(Tq * Tk), Gm = new Float64Array(Tq * Tk);
      for (let t = 0; t < Tq; t++)
        for (let j = 0; j < Tk; j++) {
          const qo = qIdx(d, b, t, h), vo = kIdx(d, b, j, g);
          let s = 0, sm = 0;
          for (let e = 0; e < Dh; e++) {
            s += dO[qo + e] * v[vo + e];
            sm += Math.abs(dO[qo + e] * v[vo + e]);
          }
          G[t * Tk + j] = s;
          Gm[t * Tk + j] = sm;
        }
      for (let t = 0; t < Tq; t++) {
        if (f.lse[t] === -Infinity) continue;
        const dS = softmaxRowBackward(f.P, G, t * Tk, Tk);
        let pg = 0, pgm = 0, ps = 0;
        for (let j = 0; j < Tk; j++) {
          const p = f.P[t * Tk + j];
          pg += p * G[t * Tk + j];
          pgm += p * Gm[t * Tk + j];
          if (p > 0) ps += p * f.sMag[t * Tk + j];
        }
        const qo = qIdx(d, b, t, h);
        for (let j = 0; j < Tk; j++) {
          const p = f.P[t * Tk + j];
          if (p === 0) continue;
          // |dS| = P |G - <P, G>| summed termwise: P (|G| + <P, |G|>); the score-aware one adds the
          // relative error P picks up from score rounding, (sMag_j + <P, sMag>), times the same factor.
          const dsm = p * (Gm[t * Tk + j] + pgm);
          const rel = f.sMag[t * Tk + j] + ps;
          const dsmS = dsm * (1 + rel);
          const ko = kIdx(d, b, j, g);
          for (let e = 0; e < Dh; e++) {
            dq[qo + e] += sc * dS[j] * k[ko + e];
            dk[ko + e] += sc * dS[j] * q[qo + e];
            dv[ko + e] += p * dO[qo + e];
            dqMag[qo + e] += as * dsm * Math.abs(k[ko + e]);
            dkMag[ko + e] += as * dsm * Math.abs(q[qo + e]);
            dvMag[ko + e] += p * Math.abs(dO[qo + e]);
            dqMagS[qo + e] += as * dsmS * Math.abs(k[ko + e]);
            dkMagS[ko + e] += as * dsmS * Math.abs(q[qo + e]);
            dvMagS[ko + e] += p * (1 + rel) * Math.abs(dO[qo + e]);
          }
        }
      }
    }
  return { dq, dk, dv, dqMag, dkMag, dvMag, dqMagS, dkMagS, dvMagS };
}

/** L = sum(O * R) in float64, the loss the finite-difference checks differentiate. */
export function attentionLoss(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, mask: ArrayLike<number> | null, d: AttnDims, R: ArrayLike<number>): number {
  const { o } = attentionRef(q, k, v, mask, d);
  let L = 0;
  for (let i = 0; i < o.length; i++) L += o[i] * R[i];
  return L;
}
