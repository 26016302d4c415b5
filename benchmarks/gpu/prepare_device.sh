#!/usr/bin/env bash
# Makes .device/, what benchmarks/gpu/device_check.sh unpacks on the GPU machine (no Node, npm or network there), here
# before the first device call, and checks that it fits the device tool's carry limit (64 MiB). Then:
#   run(command: "bash benchmarks/gpu/device_check.sh", carry: [".device"], ...)   (its header has the plan)
#   .device/node.xz      Node 20, from ../shared/device/
#   .device/nm.tar.xz    node_modules without what the GPU run does not load (typescript, type declarations, source maps)
#   .device/src.tar      `git archive HEAD`: commit every fix first (REUSE=1 calls run the first call's tree)
#   .device/pylib.tar.xz peft, accelerate, psutil with their .dist-info (the lora section's HF side, where the machine
#                        has no peft), from the local pip index
# Usage: bash benchmarks/gpu/prepare_device.sh [--no-pylib]
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
d=.device
mkdir -p "$d"
node_xz=$(ls ../shared/device/node-v20*-linux-x64.xz 2>/dev/null | head -1 || true)
[ -n "$node_xz" ] || { echo "prepare_device: no ../shared/device/node-v20*-linux-x64.xz" >&2; exit 1; }
cp "$node_xz" "$d/node.xz"
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "prepare_device: uncommitted changes are NOT in src.tar (git archive HEAD)" >&2
git archive HEAD > "$d/src.tar"
[ -d node_modules/tsx ] && [ -d node_modules/vitest ] || { echo "prepare_device: npm ci first (node_modules lacks tsx or vitest)" >&2; exit 1; }
tar -cf - --exclude=node_modules/typescript --exclude=node_modules/@types --exclude='*.map' --exclude='*.d.ts' node_modules | xz -T0 -6 > "$d/nm.tar.xz"
if [ "${1:-}" != --no-pylib ]; then
  p=$(mktemp -d)
  if pip install -q --no-deps --index-url file:///opt/pypi/simple --target "$p" peft accelerate psutil 2>"$p.err"; then
    tar -cJf "$d/pylib.tar.xz" --exclude=__pycache__ -C "$p" peft accelerate psutil $(cd "$p" && ls -d *.dist-info)
  else
    echo "prepare_device: no pylib (pip: $(tail -1 "$p.err")); the lora section's HF side needs peft on the machine" >&2
    rm -f "$d/pylib.tar.xz"
  fi
  rm -rf "$p" "$p.err"
fi
total=$(du -cb "$d"/* | tail -1 | cut -f1)
ls -l "$d"
echo "prepare_device: $((total / 1048576)) MiB of the 64 MiB carry limit, src at $(git rev-parse --short HEAD)"
[ "$total" -le $((64 * 1048576)) ] || { echo "prepare_device: over the carry limit" >&2; exit 1; }
