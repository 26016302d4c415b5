// Independent float64 references of the fused kernels: plain loops over MATERIALISED [N, V] logits,
// gradients derived through the generic softmax Jacobian (dz = p * (g - <p, g>)) rather than the
// closed forms the kernels use, so a wrong closed form cannot hide in both.
//
// Each gradient also comes with a magnitude ("...Mag"): the same sums with every term replaced by its
// absolute value. A float32 sum of terms t_i has an error ~ eps * sum |t_i|, however much the terms
// cancel, so tests measure errors against max(Mag) (normwise, condition-aware) rather than max |ref|,
// which would demand relative accuracy from results that are the tiny difference of large terms.
export type F64 = Float64Array;

/** z[i, v] = s * sum_k a[i, k] b[v, k] in float64. */
export function logits(a: ArrayLike<number>, b: ArrayLike<number>, n: number, V: number, d: number, s = 1): F64 {
  const z = new Float64Array(n * V);
  for (let i = 0; i < n; i++)
    for (let v = 0; v < V; v++) {
      let acc = 0;
      for (let k = 0; k < d; k++) acc += a[i * d + k] * b[v * d + k];
      z[i * V + v] = acc * s;
    }
  return z;
}

function rowLogSoftmax(z: F64, i: number, V: number): { logp: F64; lse: number } {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, z[i * V + v]);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(z[i * V + v] - m);
  const lse = m + Math.log(s);
  const logp = new Float64Array(V);
  for (let v = 0; v < V; v++) logp[v] = z[i * V + v] - lse;
  return { logp, lse };
}

/** Backprop of g (dL/dp) through p = softmax(z): dz = p * (g - <p, g>). */
function softmaxBackward(logp: F64, g: F64): F64 {
  const V = logp.length;
  let dot = 0;
  for (let v = 0; v < V; v++) dot += Math.exp(logp[v]) * g[v];
  const dz = new Float64Array(V);
  for (let v = 0; v < V; v++) dz[v] = Math.exp(logp[v]) * (g[v] - dot);
  return dz;
}

/** dA[n, d] = G[n, V] B[V, d] and dB[V, d] = G^T A (float64); with abs, the same over |G|, |A|, |B|. */
function backprop(G: F64, A: ArrayLike<number>, B: ArrayLike<number>, n: number, V: number, d: number, abs = false): { dA: F64; dB: F64 } {
  if (abs) {
    G = G.map(Math.abs);
    A = Float64Array.from(A, Math.abs);
    B = Float64Array.from(B, Math.abs);
  }
  const dA = new Float64Array(n * d), dB = new Float64Array(V * d);
  for (let i = 0; i < n; i++)
    for (let v = 0; v < V; v++) {
      const g = G[i * V + v];
      if (g === 0) continue;
      for (let k = 0; k < d; k++) {
        dA[i * d + k] += g * B[v * d + k];
        dB[v * d + k] += g * A[i * d + k];
      }
    }
  return { dA, dB };
}

export interface CeRefOptions {
  ignoreIndex?: number;
  reduction?: 'mean' | 'sum' | 'none';
  gradScale?: number;
  labelSmoothing?: number;
  zLossWeight?: number;
}

/** Cross-entropy with soft target y = (1 - eps) onehot + eps / V, plus z-loss lam * lse^2. */
export function linearCrossEntropyRef(h: ArrayLike<number>, w: ArrayLike<number>, t: ArrayLike<number>, N: number, d: number, V: number, o: CeRefOptions = {}) {
  const ignore = o.ignoreIndex ?? -100, eps = o.labelSmoothing ?? 0, lam = o.zLossWeight ?? 0;
  const z = logits(h, w, N, V, d);
  let valid = 0;
  for (let i = 0; i < N; i++) if (t[i] !== ignore) valid++;
  const scale = (o.gradScale ?? 1) / ((o.reduction ?? 'mean') === 'mean' ? Math.max(valid, 1) : 1);
  const losses = new Float64Array(N), G = new Float64Array(N * V), Gm = new Float64Array(N * V);
  for (let i = 0; i < N; i++) {
    if (t[i] === ignore) continue;
    const { logp, lse } = rowLogSoftmax(z, i, V);
    let loss = lam * lse * lse;
    const g = new Float64Array(V); // dL/dp
    for (let v = 0; v < V; v++) {
      const y = (v === t[i] ? 1 - eps : 0) + eps / V;
      loss -= y * logp[v];
      g[v] = -y / Math.exp(logp[v]);
    }
    losses[i] = loss;
    // -sum y log p through the softmax Jacobian; z-loss directly: d(lam lse^2)/dz = 2 lam lse p.
    const dz = Number.isFinite(g.reduce((a, b) => a + b, 0)) ? softmaxBackward(logp, g) : crossEntropyDz(logp, t[i], eps);
    for (let v = 0; v < V; v++) {
      const p = Math.exp(logp[v]);
      G[i * V + v] = scale * (dz[v] + 2 * lam * lse * p);
      Gm[i * V + v] = Math.abs(scale) * (p * Math.abs(1 + 2 * lam * lse) + (v === t[i] ? 1 - eps : 0) + eps / V);
    }
  }
  const total = losses.reduce((a, b) => a + b, 0);
  const { dA: dh, dB: dw } = backprop(G, h, w, N, V, d);
  const { dA: dhMag, dB: dwMag } = backprop(Gm, h, w, N, V, d, true);
  return { loss: (o.reduction ?? 'mean') === 'mean' ? (valid ? total / valid : 0) : total, losses, dh, dw, dhMag, dwMag, valid };
}

// When some p underflows to 0, -y/p is infinite and the Jacobian route is undefined; fall back to p - y.
function crossEntropyDz(logp: F64, t: number, eps: number): F64 {
  const V = logp.length;
  const dz = new Float64Array(V);
  for (let v = 0; v < V; v++) dz[v] = Math.exp(logp[v]) - ((v === t ? 1 - eps : 0) + eps / V);
  return dz;
}

export interface KlRefOptions {
  reduction?: 'batchmean' | 'sum' | 'none';
  temperature?: number;
  gradScale?: number;
}

/** sum_i KL(p_i || q_i), p = softmax(x wVm^T / T), q = softmax(h wLm^T / T), and all four gradients. */
export function visualWordKLRef(h: ArrayLike<number>, wLm: ArrayLike<number>, x: ArrayLike<number>, wVm: ArrayLike<number>, M: number, d: number, V: number, o: KlRefOptions = {}) {
  const T = o.temperature ?? 1;
  const a = logits(x, wVm, M, V, d, 1 / T), b = logits(h, wLm, M, V, d, 1 / T);
  const scale = (o.gradScale ?? 1) / T / ((o.reduction ?? 'batchmean') === 'batchmean' ? Math.max(M, 1) : 1);
  const losses = new Float64Array(M), lossesMag = new Float64Array(M), Ga = new Float64Array(M * V), Gb = new Float64Array(M * V);
  const Gam = new Float64Array(M * V), Gbm = new Float64Array(M * V);
  for (let i = 0; i < M; i++) {
    const A = rowLogSoftmax(a, i, V), B = rowLogSoftmax(b, i, V);
    let kl = 0;
    const gp = new Float64Array(V); // dKL/dp = log p - log q + 1
    for (let v = 0; v < V; v++) {
      const p = Math.exp(A.logp[v]);
      kl += p * (A.logp[v] - B.logp[v]);
      lossesMag[i] += p * Math.abs(A.logp[v] - B.logp[v]);
      gp[v] = A.logp[v] - B.logp[v] + 1;
    }
    losses[i] = kl;
    const da = softmaxBackward(A.logp, gp);
    // dKL/db_v = sum_u -p_u d(log q_u)/db_v = q_v - p_v (log-softmax Jacobian, summed by hand)
    for (let v = 0; v < V; v++) {
      const p = Math.exp(A.logp[v]), q = Math.exp(B.logp[v]);
      Ga[i * V + v] = scale * da[v];
      Gb[i * V + v] = scale * (q - p);
      Gam[i * V + v] = Math.abs(scale) * p * (Math.abs(A.logp[v] - B.logp[v]) + Math.abs(kl));
      Gbm[i * V + v] = Math.abs(scale) * (q + p);
    }
  }
  const total = losses.reduce((s, v) => s + v, 0);
  const { dA: dx, dB: dwVm } = backprop(Ga, x, wVm, M, V, d);
  const { dA: dh, dB: dwLm } = backprop(Gb, h, wLm, M, V, d);
  const { dA: dxMag, dB: dwVmMag } = backprop(Gam, x, wVm, M, V, d, true);
  const { dA: dhMag, dB: dwLmMag } = backprop(Gbm, h, wLm, M, V, d, true);
  return {
    loss: (o.reduction ?? 'batchmean') === 'batchmean' ? (M ? total / M : 0) : total, losses, lossesMag,
    dh, dwLm, dx, dwVm, dhMag, dwLmMag, dxMag, dwVmMag,
  };
}

/** Top-k (ids, probs) of softmax(x wVm^T) by full sort; ties to the lower id. */
export function visualWordsRef(x: ArrayLike<number>, w: ArrayLike<number>, N: number, d: number, V: number, k: number) {
  const z = logits(x, w, N, V, d);
  const ids: number[][] = [], probs: number[][] = [], zs: number[][] = [];
  for (let i = 0; i < N; i++) {
    const { logp } = rowLogSoftmax(z, i, V);
    const order = Array.from({ length: V }, (_, v) => v).sort((p, q) => logp[q] - logp[p] || p - q);
    ids.push(order.slice(0, k));
    probs.push(order.slice(0, k).map((v) => Math.exp(logp[v])));
    zs.push(order.slice(0, k + 1).map((v) => logp[v]));
  }
  return { ids, probs, logp: zs };
}

/** out = softmax(x wVm^T) e. */
export function pseudoImageFeaturesRef(x: ArrayLike<number>, w: ArrayLike<number>, e: ArrayLike<number>, N: number, d: number, V: number, dE: number): F64 {
  return pseudoImageFeaturesWithMag(x, w, e, N, d, V, dE).out;
}

/** out = softmax(x wVm^T) e in float64, with its magnitude outMag = softmax(x wVm^T) |e|. */
export function pseudoImageFeaturesWithMag(x: ArrayLike<number>, w: ArrayLike<number>, e: ArrayLike<number>, N: number, d: number, V: number, dE: number): { out: F64; outMag: F64 } {
  const z = logits(x, w, N, V, d);
  const out = new Float64Array(N * dE), outMag = new Float64Array(N * dE);
  for (let i = 0; i < N; i++) {
    const { logp } = rowLogSoftmax(z, i, V);
    for (let v = 0; v < V; v++) {
      const p = Math.exp(logp[v]);
      for (let j = 0; j < dE; j++) {
        out[i * dE + j] += p * e[v * dE + j];
        outMag[i * dE + j] += p * Math.abs(e[v * dE + j]);
      }
    }
  }
  return { out, outMag };
}

/** Gradients of sum(out * g) for out = softmax(x wVm^T) e. */
export function pseudoImageFeaturesBackwardRef(x: ArrayLike<number>, w: ArrayLike<number>, e: ArrayLike<number>, g: ArrayLike<number>, N: number, d: number, V: number, dE: number) {
  const z = logits(x, w, N, V, d);
  const G = new Float64Array(N * V), Gm = new Float64Array(N * V), de = new Float64Array(V * dE), deMag = new Float64Array(V * dE);
  for (let i = 0; i < N; i++) {
    const { logp } = rowLogSoftmax(z, i, V);
    const gp = new Float64Array(V); // dL/dp_v = <g_i, e_v>
    let dot = 0;
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let j = 0; j < dE; j++) s += g[i * dE + j] * e[v * dE + j];
      gp[v] = s;
      const p = Math.exp(logp[v]);
      dot += p * s;
      for (let j = 0; j < dE; j++) {
        de[v * dE + j] += p * g[i * dE + j];
        deMag[v * dE + j] += p * Math.abs(g[i * dE + j]);
      }
    }
    G.set(softmaxBackward(logp, gp), i * V);
    for (let v = 0; v < V; v++) Gm[i * V + v] = Math.exp(logp[v]) * (Math.abs(gp[v]) + Math.abs(dot));
  }
  const { dA: dx, dB: dwVm } = backprop(G, x, w, N, V, d);
  const { dA: dxMag, dB: dwVmMag } = backprop(Gm, x, w, N, V, d, true);
  return { dx, dwVm, de, dxMag, dwVmMag, deMag };
}

/**
 * What the float32 rounding of logits z = s a b^T alone may cost a softmax-based result, as a normwise error against
 * that result's condition-aware magnitude: logits of ~300 carry ~300 * 2^-24 = 2e-5 before any other kernel
 * arithmetic, which no kernel can avoid. A logit error of at most D moves p_v by p_v (dz_v - <p, dz>), at most
 * 2 D p_v relative, so results built from p (and their gradients, through the same Jacobian) move by at most 2 D
 * times their magnitude. D is the probabilistic bound on a float32 dot product of length d (Higham & Mary, 2019),
 * sqrt(d) 2^-24 s sum_k |a_ik b_vk|, at its largest over the case. Over 400 to 1,500 random draws of the four fused
 * softmax kernels' cases (logits x1 and x100), the CPU kernels' whole error stayed below 0.8 D, so 2 D holds with room.
 */
export function logitRoundingAllowance(a: ArrayLike<number>, b: ArrayLike<number>, n: number, V: number, d: number, s = 1): number {
  let worst = 0;
  for (let i = 0; i < n; i++)
    for (let v = 0; v < V; v++) {
      let acc = 0;
      for (let k = 0; k < d; k++) acc += Math.abs(a[i * d + k] * b[v * d + k]);
      worst = Math.max(worst, acc);
    }
  return 2 * Math.sqrt(d) * 2 ** -24 * Math.abs(s) * worst;
}

/** Central finite difference of f at coordinate i of `at` (float64). */
export function finiteDifference(f: (p: Float64Array) => number, at: ArrayLike<number>, i: number, step = 1e-5): number {
  const p = Float64Array.from(at);
  p[i] = at[i] + step;
  const up = f(p);
  p[i] = at[i] - step;
  const down = f(p);
  return (up - down) / (2 * step);
}
