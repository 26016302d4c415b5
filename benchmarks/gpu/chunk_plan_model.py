# The weight-gradient traffic of the CUDA fused losses, one level against gradient groups (native/core/fused_args.h
# plan_chunks, mirrored here), at the issue-2 benchmark's shape and the issue-11 training step's: rows per logit chunk
# and per group, passes over the float32 weight gradients [V, d] (each reads and writes them; the first only writes),
# their traffic, and the workspace. A model of bytes, not a measurement. Run: python3 benchmarks/gpu/chunk_plan_model.py
import math
def pick(req,n,V,bufs,budget):
    if n<=0: return 0
    if req>0: return min(req,n)
    per=V*4*bufs; rows=budget//per if per>0 else n; rows=max(rows,1)
    if rows>=n: return n
    ch=-(-n//rows); return -(-n//ch)
def plan(req,n,V,f,b,budget):
    budget=max(budget,1); one=pick(req,n,V,2*f+b,2*budget)
    if n<=0 or f==0 or b==0: return one,one
    logit=one if req>0 else min(one,256)
    rest=budget-logit*4*V*f if logit<=budget//(4*V*f) else 0
    g=rest//(2*V*b)
    if g<2*logit: return one,one
    bal=lambda rows,most: -(-rows//(-(-rows//most)))
    if req>0:  # whole requested chunks per group
        units=-(-n//logit); per=bal(units,g//logit)*logit
        return logit,min(per,n)
    if g>=n: return bal(n,logit),n
    g=bal(n,g)
    return bal(g,logit),g
for name,N,d,V in [("issue-2 shape",9216,4096,32000),("issue-11 step KL",3136,1024,32000),("issue-11 step CE",2064,1024,32000)]:
  for op,f,b,nw in [("KL",2,2,2),("CE",1,1,1)]:
    if "step" in name and op not in name: continue
    for mib in [64,256,1024]:
        B=mib*2**20
        one=plan(0,N,V,f,b,B)  # grouped
        old=pick(0,N,V,2*f+b,2*B)
        passes_old=-(-N//old); passes_new=-(-N//one[1])
        traffic=lambda p: p*nw*V*d*4*2/1e9 - nw*V*d*4/1e9  # first pass beta 0 writes only
        ws_new=(one[0]*4*V*f+one[1]*2*V*b)/2**20; ws_old=old*(4*f+2*b)*V/2**20
        print(f"{name:18s} {op} {mib:5d} MiB: one level {old:5d} rows x{passes_old:3d} passes {traffic(passes_old):6.1f} GB ws {ws_old:6.0f} MiB | grouped {one[0]:4d}/{one[1]:5d} x{passes_new:3d} passes {traffic(passes_new):6.1f} GB ws {ws_new:6.0f} MiB")
