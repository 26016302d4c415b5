// Where a model runs: 'cpu' (the default everywhere), 'cuda' or 'cuda:N'. Tensors carry only 'cpu' | 'cuda': one
// process drives one GPU (the CUDA addon's current device), as one rank per GPU does in data-parallel training, so
// 'cuda:N' selects that GPU for the process before anything is allocated there. Asking for CUDA where there is
// none is an error that says why (the addon's reason: not built, no driver, no device, disabled).
import { typeError } from './errors';
import { cuda } from './native';
import { Device } from './tensor';

/** A device as users write it: 'cpu', 'cuda' (the process's GPU, cuda:0 unless one was selected) or 'cuda:N'. */
export type DeviceSpec = 'cpu' | 'cuda' | `cuda:${number}`;

/** 'cpu' | 'cuda' | 'cuda:N' -> the tensor device and the GPU index (null for the CPU and for plain 'cuda'). */
export function parseDevice(where: string, spec: unknown): { device: Device; index: number | null } {
  if (spec === 'cpu') return { device: 'cpu', index: null };
  if (spec === 'cuda') return { device: 'cuda', index: null };
  const m = typeof spec === 'string' ? /^cuda:(\d{1,4})$/.exec(spec) : null;
  if (!m) throw typeError(where, 'device', "'cpu', 'cuda' or 'cuda:N' (N a GPU index)", spec);
  return { device: 'cuda', index: Number(m[1]) };
}

/**
 * Resolves a device spec and makes it usable: for CUDA, loads the addon (an Error naming why when there is no
 * usable GPU) and selects GPU N for this process (an Error when N does not exist or the process already holds
 * memory on another GPU). Returns the tensor device.
 */
export function useDevice(where: string, spec: DeviceSpec | undefined): Device {
  // useDevice('cuda'), the spec alone, would read as a caller named 'cuda' asking for the default: the CPU, silently
  if (arguments.length < 2) throw new TypeError(`useDevice(where, spec): expected the caller's name and the device spec, but received one argument (${JSON.stringify(where)})`);
  const { device, index } = parseDevice(where, spec ?? 'cpu');
  if (device === 'cpu') return device;
  const addon = cuda(where);
  if (index !== null) addon.selectDevice!(index);
  return device;
}
