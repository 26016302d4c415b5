#!/usr/bin/env python3
"""A float64 model of the gemm attention kernel (native/cuda/engine/attention_gemm.cu), for checking it without a GPU.

1. Its host logic, mirrored step for step over flat buffers: the pointer arithmetic of the batch entries, cuBLAS's
   column-major operand swap (cublasGemmBatchedEx's semantics), the query chunks and their causal key ranges, the GQA
   split of the dK/dV products, the row passes, empty rows and chunks. Compared with a direct reference on 7 shapes,
   with one chunk and with 16-row chunks (workspace 1 byte): the largest differences must be float64 rounding.
   Keep the mirror in step with the .cu file when either changes.
2. What its bf16 roundings cost (the inputs, P, dS and the outputs rounded to bf16 as the kernel rounds them,
   FlashAttention-2's numerics): the worst normwise error (max |diff| / max |ref|) of O, dQ, dK, dV against float64
   over 100 seeds of four parity-table cases, against the table's bf16 tolerance of 1e-2.

  python3 benchmarks/gpu/attention_gemm_model.py     # numpy only; a second or two
"""
import numpy as np

np.seterr(invalid='ignore')  # -inf - -inf in the lse comparison of rows that see no key

rng = np.random.default_rng(0)


class Buf:
    def __init__(s, n): s.a = np.full(max(n,1), np.nan)

def operand_at(o, i, inner):  # o = (buf, base_elems, sb, sh, mul, div, add)
    buf, base, sb, sh, mul, div, add = o
    b, k = divmod(i, inner)
    return buf, base + b*sb + (k*mul//div + add)*sh

def cublas_gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    (ba, oa), (bb, ob), (bc, oc) = A, B, C
    def get(buf, off, ld, rows, cols):  # col-major rows x cols
        M = np.empty((rows, cols))
        for j in range(cols): M[:, j] = buf.a[off + j*ld: off + j*ld + rows]
        return M
    opA = get(ba, oa, lda, m, k) if transa == 'N' else get(ba, oa, lda, k, m).T
    opB = get(bb, ob, ldb, k, n) if transb == 'N' else get(bb, ob, ldb, n, k).T
    assert lda >= (m if transa=='N' else k) and ldb >= (k if transb=='N' else n) and ldc >= m
    R = alpha * opA @ opB
    for j in range(n):
        seg = bc.a[oc + j*ldc: oc + j*ldc + m]
        bc.a[oc + j*ldc: oc + j*ldc + m] = R[:, j] + (beta * seg if beta != 0 else 0)

def gemm_entries(batch, inner, ta, tb, M, N, K, alpha, A, B, beta, C):
    (Ao, Ald), (Bo, Bld), (Co, Cld) = A, B, C
    for i in range(batch*inner):
        cublas_gemm('T' if tb else 'N', 'T' if ta else 'N', N, M, K, alpha,
                    operand_at(Bo, i, inner), Bld, operand_at(Ao, i, inner), Ald, beta, operand_at(Co, i, inner), Cld)

def rows_of(buf, T_, H, Dh, t0, mul, div, add): return (buf, t0*H*Dh, T_*H*Dh, Dh, mul, div, add)
def blocks_of(buf, Hq, Qc, ldS, mul, add): return (buf, 0, Hq*Qc*ldS, Qc*ldS, mul, 1, add)
def round_up(x, m): return (x + m - 1)//m*m

def chunk_rows(d, ldS, bpe, budget):
    per_row = max(1, d['B']*d['Hq']*ldS*bpe)
    rows = max(16, budget//per_row)
    if rows >= d['Tq']: return d['Tq']
    return max(16, rows//16*16)

def chunk_keys(d, q0, qn): return min(max(d['Tk'] - d['Tq'] + q0 + qn, 0), d['Tk']) if d['causal'] else d['Tk']

def visible(d, mask, b, j, t):
    return (mask is None or mask[b*d['Tk'] + j] != 0) and (not d['causal'] or j <= d['Tk'] - d['Tq'] + t)

def softmax_rows(d, mask, c, S, P, lse=None, dP=None, D=None, dS=None):
    """softmax_rows_kernel: P and lse (forward), or P and dS = P (dP - D_t) (backward, dP given)."""
    q0, qn, kn, Qc, ldS = c
    for r in range(d['B']*d['Hq']*qn):
        bh, i = divmod(r, qn); b = bh // d['Hq']; t = q0 + i; off = (bh*Qc + i)*ldS
        vis = [visible(d, mask, b, j, t) for j in range(kn)]
        vals = [S.a[off+j] for j in range(kn) if vis[j]]
        m = max(vals) if vals else -np.inf
        l = sum(np.exp(v - m) for v in vals) if vals else 0.0
        none = l == 0
        for j in range(kn):
            p = np.exp(S.a[off+j]-m)/l if vis[j] and not none else 0.0
            P.a[off+j] = p
            if dP is not None: dS.a[off+j] = p*(dP.a[off+j] - D.a[bh*d['Tq'] + t])
        if dP is None: lse.a[bh*d['Tq'] + t] = -np.inf if none else m + np.log(l)

def empty_rows(d, q0, qn, out, lse):
    row = d['Hq']*d['Dh']
    for e in range(d['B']*qn*row):
        b, rem = divmod(e, qn*row)
        out.a[(b*d['Tq'] + q0)*row + rem] = 0.0
        if lse is not None and rem % d['Dh'] == 0:
            i = rem // row; h = (rem % row)//d['Dh']
            lse.a[(b*d['Hq'] + h)*d['Tq'] + q0 + i] = -np.inf

def forward(d, Q, K, V, mask, O, lse, budget):
    ldS = round_up(max(d['Tk'],1), 8); Qc = chunk_rows(d, ldS, 6, budget)
    ldq, ldk = d['Hq']*d['Dh'], d['Hkv']*d['Dh']
    S, P = Buf(d['B']*d['Hq']*Qc*ldS), Buf(d['B']*d['Hq']*Qc*ldS)
    kvk, kvv = rows_of(K, d['Tk'], d['Hkv'], d['Dh'], 0, 1, d['G'], 0), rows_of(V, d['Tk'], d['Hkv'], d['Dh'], 0, 1, d['G'], 0)
    nch = 0
    for q0 in range(0, d['Tq'], Qc):
        nch += 1
        qn = min(Qc, d['Tq'] - q0); kn = chunk_keys(d, q0, qn)
        if kn == 0: empty_rows(d, q0, qn, O, lse); continue
        q = (rows_of(Q, d['Tq'], d['Hq'], d['Dh'], q0, 1, 1, 0), ldq)
        gemm_entries(d['B'], d['Hq'], False, True, qn, kn, d['Dh'], d['scale'], q, (kvk, ldk), 0.0, (blocks_of(S, d['Hq'], Qc, ldS, 1, 0), ldS))
        softmax_rows(d, mask, (q0, qn, kn, Qc, ldS), S, P, lse)
        gemm_entries(d['B'], d['Hq'], False, False, qn, d['Dh'], kn, 1.0, (blocks_of(P, d['Hq'], Qc, ldS, 1, 0), ldS), (kvv, ldk), 0.0,
                     (rows_of(O, d['Tq'], d['Hq'], d['Dh'], q0, 1, 1, 0), ldq))
    return nch

def backward(d, dO, Q, K, V, O, mask, dQ, dK, dV, budget):
    ldS = round_up(max(d['Tk'],1), 8); Qc = chunk_rows(d, ldS, 12, budget)
    ldq, ldk = d['Hq']*d['Dh'], d['Hkv']*d['Dh']; G = d['G']
    D = Buf(d['B']*d['Hq']*d['Tq'])
    for r in range(d['B']*d['Hq']*d['Tq']):
        bh, t = divmod(r, d['Tq']); b, h = divmod(bh, d['Hq']); base = ((b*d['Tq'] + t)*d['Hq'] + h)*d['Dh']
        D.a[r] = np.dot(dO.a[base:base+d['Dh']], O.a[base:base+d['Dh']])
    dK.a[:] = 0; dV.a[:] = 0; dQ.a[:] = 0
    n = d['B']*d['Hq']*Qc*ldS
    S, dP, P, dS = Buf(n), Buf(n), Buf(n), Buf(n)
    k = (rows_of(K, d['Tk'], d['Hkv'], d['Dh'], 0, 1, G, 0), ldk); v = (rows_of(V, d['Tk'], d['Hkv'], d['Dh'], 0, 1, G, 0), ldk)
    dk = ((dK, 0, d['Tk']*ldk, d['Dh'], 1, 1, 0), ldk); dv = ((dV, 0, d['Tk']*ldk, d['Dh'], 1, 1, 0), ldk)
    for q0 in range(0, d['Tq'], Qc):
        qn = min(Qc, d['Tq'] - q0); kn = chunk_keys(d, q0, qn)
        if kn == 0: continue
        q = (rows_of(Q, d['Tq'], d['Hq'], d['Dh'], q0, 1, 1, 0), ldq); dout = (rows_of(dO, d['Tq'], d['Hq'], d['Dh'], q0, 1, 1, 0), ldq)
        dq = (rows_of(dQ, d['Tq'], d['Hq'], d['Dh'], q0, 1, 1, 0), ldq)
        gemm_entries(d['B'], d['Hq'], False, True, qn, kn, d['Dh'], d['scale'], q, k, 0.0, (blocks_of(S, d['Hq'], Qc, ldS, 1, 0), ldS))
        gemm_entries(d['B'], d['Hq'], False, True, qn, kn, d['Dh'], 1.0, dout, v, 0.0, (blocks_of(dP, d['Hq'], Qc, ldS, 1, 0), ldS))
        softmax_rows(d, mask, (q0, qn, kn, Qc, ldS), S, P, dP=dP, D=D, dS=dS)
        for r in range(G):  # (b, g) entries: query head g G + r; kv head g
            pr = (blocks_of(P, d['Hq'], Qc, ldS, G, r), ldS); doutr = (rows_of(dO, d['Tq'], d['Hq'], d['Dh'], q0, G, 1, r), ldq)
            gemm_entries(d['B'], d['Hkv'], True, False, kn, d['Dh'], qn, 1.0, pr, doutr, 1.0, dv)
        for r in range(G):
            dsr = (blocks_of(dS, d['Hq'], Qc, ldS, G, r), ldS); qr = (rows_of(Q, d['Tq'], d['Hq'], d['Dh'], q0, G, 1, r), ldq)
            gemm_entries(d['B'], d['Hkv'], True, False, kn, d['Dh'], qn, d['scale'], dsr, qr, 1.0, dk)
        gemm_entries(d['B'], d['Hq'], False, False, qn, d['Dh'], kn, d['scale'], (blocks_of(dS, d['Hq'], Qc, ldS, 1, 0), ldS), k, 1.0, dq)

def reference(d, q, k, v, mask, dO):
    B,Tq,Tk,Hq,Hkv,Dh,G = (d[x] for x in ['B','Tq','Tk','Hq','Hkv','Dh','G'])
    O = np.zeros((B,Tq,Hq,Dh)); lse = np.full((B,Hq,Tq), -np.inf)
    dQ = np.zeros_like(q); dK = np.zeros_like(k); dV = np.zeros_like(v)
    for b in range(B):
        for h in range(Hq):
            g = h // G
            for t in range(Tq):
                vis = [j for j in range(Tk) if visible(d, mask, b, j, t)]
                if not vis: continue
                s = np.array([d['scale']*q[b,t,h]@k[b,j,g] for j in vis])
                m = s.max(); p = np.exp(s-m); l = p.sum(); p /= l
                O[b,t,h] = sum(p[i]*v[b,j,g] for i,j in enumerate(vis)); lse[b,h,t] = m + np.log(l)
                dp = np.array([dO[b,t,h]@v[b,j,g] for j in vis]); Dt = dO[b,t,h]@O[b,t,h]
                ds = p*(dp - Dt)
                for i,j in enumerate(vis):
                    dV[b,j,g] += p[i]*dO[b,t,h]; dK[b,j,g] += d['scale']*ds[i]*q[b,t,h]; dQ[b,t,h] += d['scale']*ds[i]*k[b,j,g]
    return O, lse, dQ, dK, dV

def bf(x):
    x = np.asarray(x, np.float32); u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32).astype(np.float64)
def rounding(B, Tq, Tk, Hq, Hkv, Dh, causal, ss=1.0, mask=False):
    """The parity table's bf16 case: inputs rounded to bf16 for both sides, the backward given the same (bf16) O;
    the reference computes in float64 from there, the model rounds P, dS and the outputs as the kernel does."""
    G = Hq // Hkv; sc = ss / np.sqrt(Dh)
    q, k, v, dO = [bf(rng.normal(size=s)) for s in [(B, Hq, Tq, Dh), (B, Hkv, Tk, Dh), (B, Hkv, Tk, Dh), (B, Hq, Tq, Dh)]]
    kk = np.repeat(k, G, 1); vv = np.repeat(v, G, 1)
    vis = np.ones((B, 1, Tq, Tk), bool)
    if causal: vis &= (np.arange(Tk)[None, :] <= Tk - Tq + np.arange(Tq)[:, None])[None, None]
    if mask: vis &= (rng.random((B, 1, 1, Tk)) > 0.3)
    S = np.where(vis, sc * q @ kk.transpose(0, 1, 3, 2), -np.inf)
    m = S.max(-1, keepdims=True); m = np.where(np.isfinite(m), m, 0); P = np.exp(S - m); l = P.sum(-1, keepdims=True)
    P = np.where(l > 0, P / np.where(l > 0, l, 1), 0)
    O = P @ vv; Og = bf(bf(P) @ vv)  # the forward: P rounded before P V, O rounded once
    O_in = bf(O)  # the backward's O input, the same for both sides
    dP = dO @ vv.transpose(0, 1, 3, 2); dS = P * (dP - (dO * O_in).sum(-1, keepdims=True))
    dSg = bf(dS)
    Pg = bf(P)
    red = lambda x: x.reshape(B, Hkv, G, Tk, Dh).sum(2)  # dK, dV of a kv head: summed over its G query heads
    dQ, dK, dV = sc * dS @ kk, red(sc * dS.transpose(0, 1, 3, 2) @ q), red(P.transpose(0, 1, 3, 2) @ dO)
    dQg, dKg, dVg = bf(sc * dSg @ kk), bf(red(sc * dSg.transpose(0, 1, 3, 2) @ q)), bf(red(Pg.transpose(0, 1, 3, 2) @ dO))
    e = lambda a, b: np.abs(a - b).max() / np.abs(b).max()
    return [round(e(Og,O),4), round(e(dQg,dQ),4), round(e(dKg,dK),4), round(e(dVg,dV),4)]
configs = [
 dict(B=2,Tq=33,Tk=33,Hq=4,Hkv=2,Dh=8,causal=True,mask=None),
 dict(B=2,Tq=37,Tk=37,Hq=3,Hkv=1,Dh=5,causal=True,mask='rand'),
 dict(B=1,Tq=20,Tk=45,Hq=2,Hkv=2,Dh=6,causal=False,mask='rand'),
 dict(B=2,Tq=40,Tk=5,Hq=2,Hkv=1,Dh=4,causal=True,mask=None),   # leading rows see nothing (empty chunks)
 dict(B=2,Tq=5,Tk=33,Hq=2,Hkv=2,Dh=8,causal=True,mask=None),   # KV cache
 dict(B=3,Tq=18,Tk=18,Hq=4,Hkv=2,Dh=3,causal=False,mask='allpad'),
 dict(B=2,Tq=3,Tk=0,Hq=2,Hkv=1,Dh=4,causal=False,mask=None),
]
worst = 0.0
for cfg in configs:
    d = dict(cfg); d['G'] = d['Hq']//d['Hkv']; d['scale'] = 1/np.sqrt(d['Dh'])
    B,Tq,Tk,Hq,Hkv,Dh = (d[x] for x in ['B','Tq','Tk','Hq','Hkv','Dh'])
    q = rng.normal(size=(B,Tq,Hq,Dh)); k = rng.normal(size=(B,Tk,Hkv,Dh)); v = rng.normal(size=(B,Tk,Hkv,Dh)); dO = rng.normal(size=(B,Tq,Hq,Dh))
    mask = None
    if d['mask']:
        mask = (rng.random(B*Tk) > 0.3).astype(np.int32)
        if d['mask'] == 'allpad': mask[Tk:2*Tk] = 0
    d['mask'] = mask
    Oref, lref, dQr, dKr, dVr = reference(d, q, k, v, mask, dO)
    for budget in [1, 64<<20]:
        Qb, Kb, Vb, dOb = Buf(q.size), Buf(k.size), Buf(v.size), Buf(dO.size)
        Qb.a[:q.size]=q.ravel(); Kb.a[:k.size]=k.ravel(); Vb.a[:v.size]=v.ravel(); dOb.a[:dO.size]=dO.ravel()
        O, L = Buf(q.size), Buf(B*Hq*Tq)
        nch = forward(d, Qb, Kb, Vb, mask, O, L, budget)
        dQ, dK, dV = Buf(q.size), Buf(k.size), Buf(v.size)
        backward(d, dOb, Qb, Kb, Vb, O, mask, dQ, dK, dV, budget)
        errs = [np.nanmax(np.abs(O.a[:q.size]-Oref.ravel())) if q.size else 0,
                np.max(np.abs(np.where(np.isinf(lref.ravel()), 0, L.a[:lref.size]-lref.ravel()))) if lref.size else 0,
                int(np.sum(np.isinf(L.a[:lref.size]) != np.isinf(lref.ravel()))) if lref.size else 0,
                np.max(np.abs(dQ.a[:q.size]-dQr.ravel())) if q.size else 0,
                np.max(np.abs(dK.a[:k.size]-dKr.ravel())) if k.size else 0,
                np.max(np.abs(dV.a[:v.size]-dVr.ravel())) if v.size else 0]
        worst = max(worst, *errs)
        print('host logic', {x: cfg[x] for x in ['B', 'Tq', 'Tk', 'Hq', 'Hkv', 'causal']}, 'mask' if mask is not None else '', 'chunks', nch,
              'max |diff| O, lse, (lse -inf mismatches), dQ, dK, dV:', ['%.1e' % e for e in errs])
assert worst < 1e-12, f'the mirror of the host logic is off by {worst}'


print('bf16 roundings: worst normwise error of O, dQ, dK, dV over 100 seeds (the parity tolerance is 1e-2)')
for name, case in (('large scores x100', (2, 33, 33, 2, 1, 8, True, 100.0)), ('MQA 4/1 causal T=130 Dh=64', (2, 130, 130, 4, 1, 64, True)),
                   ('Dh=128', (1, 40, 40, 2, 2, 128, True)), ('random key mask, causal T=130', (3, 130, 130, 2, 2, 8, True, 1.0, True))):
    worst = np.array([rounding(*case) for _ in range(100)]).max(0)
    print(f'  {name}:', ['%.4f' % e for e in worst])
    assert worst.max() < 1e-2
