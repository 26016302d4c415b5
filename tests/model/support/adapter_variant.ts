// A copy of a LoRA adapter folder (adapter_config.json + adapter_model.safetensors) with its config and tensors
// edited: the adapter files the LoRA tests feed to loadLoraAdapter.
import * as fs from 'fs';
import * as path from 'path';
import { HostTensor, readSafetensors, writeSafetensors } from '../../../src/io/safetensors';

/** Writes into `dest` (created) the adapter of `src` with `edit` applied to its config and `tensors` to its tensors. */
export function adapterVariant(src: string, dest: string, edit: (c: Record<string, unknown>) => void, tensors?: (m: Map<string, HostTensor>) => void): string {
  fs.mkdirSync(dest, { recursive: true });
  const c = JSON.parse(fs.readFileSync(path.join(src, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  edit(c);
  fs.writeFileSync(path.join(dest, 'adapter_config.json'), JSON.stringify(c));
  const w = readSafetensors(path.join(src, 'adapter_model.safetensors'));
  tensors?.(w);
  writeSafetensors(path.join(dest, 'adapter_model.safetensors'), w);
  return dest;
}
