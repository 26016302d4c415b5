// The TCP rendezvous of a torchrun-style launch: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
// connects and says who it is, and once all WORLD_SIZE - 1 have arrived rank 0 hands each of them the same
// payload (NCCL's unique id). One JSON line each way. A rank missing at the deadline, a duplicate rank or a
// different world size ends every rank with an error that says which.
import * as net from 'net';
import type { Addon, DistGroupInfo } from '../native';
import type { LaunchEnv } from './env';

export interface RendezvousOptions {
  addr: string;
  port: number;
  rank: number;
  worldSize: number;
  /** Rank 0's payload for everyone (ignored on the other ranks). */
  payload: Uint8Array;
  timeoutMs: number;
}

const where = (o: { addr: string; port: number }) => `rendezvous at ${o.addr}:${o.port}`;

/** Resolves with rank 0's payload on every rank once all ranks arrived. */
export function rendezvous(o: RendezvousOptions): Promise<Uint8Array> {
  if (o.worldSize === 1) return Promise.resolve(o.payload);
  return o.rank === 0 ? serve(o) : join(o);
}

function serve(o: RendezvousOptions): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const arrived = new Map<number, net.Socket>();
    let finished = false;
    const server = net.createServer((sock) => {
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('error', () => {});
      sock.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > 4096) return sock.destroy();
        const nl = buf.indexOf('\n');
        if (nl < 0 || finished) return;
        let msg: { rank?: unknown; worldSize?: unknown };
        try {
          msg = JSON.parse(buf.slice(0, nl)) as typeof msg;
        } catch {
          return refuse(sock, 'sent a malformed hello');
        }
        const r = msg.rank;
        if (msg.worldSize !== o.worldSize) return refuse(sock, `rank ${String(r)} was started with WORLD_SIZE ${String(msg.worldSize)}, rank 0 with ${o.worldSize}`, true);
        if (!Number.isInteger(r) || (r as number) < 1 || (r as number) >= o.worldSize) return refuse(sock, `rank ${String(r)} is not a rank in [1, ${o.worldSize})`, true);
        if (arrived.has(r as number)) return refuse(sock, `two processes claim rank ${String(r)} (check RANK of each)`, true);
        arrived.set(r as number, sock);
        sock.on('close', () => {
          if (!finished && arrived.get(r as number) === sock) arrived.delete(r as number);
        });
        if (arrived.size === o.worldSize - 1) {
          finished = true;
          const line = JSON.stringify({ payload: Buffer.from(o.payload).toString('base64') }) + '\n';
          for (const s of arrived.values()) s.end(line);
          clearTimeout(timer);
          server.close();
          resolve(o.payload);
        }
      });
    });
    // A client that cannot take part is told why; a conflict (duplicate rank, other world size) fails the whole
    // rendezvous, since no group can form.
    const refuse = (sock: net.Socket, why: string, fatal = false) => {
      sock.end(JSON.stringify({ error: why }) + '\n');
      if (fatal) fail(why);
    };
    // `why` without the address: each rank puts its own `rendezvous at ...:` in front (it was there twice)
    const fail = (why: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const s of arrived.values()) s.end(JSON.stringify({ error: why }) + '\n');
      server.close();
      reject(new Error(`${where(o)}: ${why}`));
    };
    const timer = setTimeout(() => {
      const missing = Array.from({ length: o.worldSize - 1 }, (_, k) => k + 1).filter((r) => !arrived.has(r));
      fail(`not every rank arrived within ${o.timeoutMs / 1000} s: missing rank(s) ${missing.join(', ')} of ${o.worldSize} (did they start, with the same MASTER_ADDR / MASTER_PORT?)`);
    }, o.timeoutMs);
    server.on('error', (e) => fail(`rank 0 could not listen: ${e.message}`));
    server.listen(o.port, o.addr);
  });
}

function join(o: RendezvousOptions): Promise<Uint8Array> {
  const deadline = Date.now() + o.timeoutMs;
  return new Promise((resolve, reject) => {
    let lastError = 'no answer';
    const attempt = () => {
      if (Date.now() >= deadline) {
        reject(new Error(`${where(o)}: rank ${o.rank} could not reach rank 0 within ${o.timeoutMs / 1000} s (${lastError}; is rank 0 running?)`));
        return;
      }
      const sock = net.connect(o.port, o.addr);
      let buf = '', connected = false, settled = false;
      sock.setEncoding('utf8');
      const retry = (why: string) => {
        if (settled) return;
        settled = true;
        lastError = why;
        sock.destroy();
        setTimeout(attempt, 200);
      };
      const left = setTimeout(() => {
        if (settled) return;
        settled = true;
        sock.destroy();
        // (or what listens there is not rank 0 of this run: it took the connection and never answered)
        reject(new Error(`${where(o)}: rank ${o.rank} connected but the other ranks did not all arrive within ${o.timeoutMs / 1000} s (or what listens at that port is not this run's rank 0)`));
      }, Math.max(1, deadline - Date.now()));
      sock.on('connect', () => {
        connected = true;
        sock.write(JSON.stringify({ rank: o.rank, worldSize: o.worldSize }) + '\n');
      });
      sock.on('data', (chunk: string) => {
        buf += chunk;
        const nl = buf.indexOf('\n');
        if (nl < 0 || settled) return;
        settled = true;
        clearTimeout(left);
        sock.destroy();
        let msg: { payload?: string; error?: string };
        try {
          msg = JSON.parse(buf.slice(0, nl)) as typeof msg;
        } catch {
          reject(new Error(`${where(o)}: rank 0 answered with a malformed line`));
          return;
        }
        if (typeof msg.error === 'string') reject(new Error(`${where(o)}: ${msg.error}`));
        else if (typeof msg.payload === 'string') resolve(new Uint8Array(Buffer.from(msg.payload, 'base64')));
        else reject(new Error(`${where(o)}: rank 0 answered without a payload`));
      });
      sock.on('error', (e) => {
        clearTimeout(left);
        retry(e.message);
      });
      sock.on('close', () => {
        clearTimeout(left);
        if (!settled) {
          if (connected) {
            settled = true;
            reject(new Error(`${where(o)}: rank 0 closed the connection before the rendezvous completed (it died?)`));
          } else retry('connection closed');
        }
      });
    };
    attempt();
  });
}

/**
 * The GPU an NCCL rank drives, as torchrun users pick it (torch.cuda.set_device(LOCAL_RANK)): with several GPUs
 * visible, the one of its local rank; with one (one GPU, or CUDA_VISIBLE_DEVICES set per rank), that one.
 */
export function ncclDeviceIndex(localRank: number, deviceCount: number): number {
  if (deviceCount <= 1) return 0;
  if (localRank >= deviceCount)
    throw new Error(`initProcessGroup (nccl): local rank ${localRank} has no GPU of its own: this machine shows ${deviceCount} (cuda:0 to cuda:${deviceCount - 1}); start at most ${deviceCount} ranks per node`);
  return localRank;
}

/** NCCL's group: rank 0's unique id handed to every rank by the rendezvous, then ncclCommInitRank on the rank's GPU. */
export async function ncclRendezvous(addon: Addon, env: LaunchEnv, timeoutMs: number): Promise<DistGroupInfo> {
  const w = 'initProcessGroup (nccl)';
  if (env.launcher === 'mpirun') throw new Error(`${w}: started by mpirun: NCCL ranks take torchrun-style variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; vwlmm train --nproc-per-node N sets them); use backend 'mpi' under mpirun`);
  const uniqueId = (addon as unknown as { ncclUniqueId?: () => Uint8Array }).ncclUniqueId;
  if (typeof uniqueId !== 'function') throw new Error(`${w}: this CUDA addon has no NCCL (backendInfo().cuda.nccl says why)`);
  if (env.worldSize > 1 && (env.masterAddr === null || env.masterPort === null)) throw new Error(`${w}: WORLD_SIZE ${env.worldSize} needs MASTER_ADDR and MASTER_PORT (rank 0's rendezvous)`);
  // before anything NCCL or CUDA does here, and before the rendezvous (a rank without a GPU fails at once): the
  // communicator belongs to the GPU current when it is made (selectDevice refuses a switch once memory is held)
  const { deviceCount } = addon.backendInfo() as { deviceCount?: number };
  if ((deviceCount ?? 0) > 1) addon.selectDevice!(ncclDeviceIndex(env.localRank, deviceCount!));
  const payload = env.rank === 0 ? uniqueId.call(addon) : new Uint8Array(0);
  const id = await rendezvous({ addr: env.masterAddr ?? '127.0.0.1', port: env.masterPort ?? 0, rank: env.rank, worldSize: env.worldSize, payload, timeoutMs });
  return addon.distInit('nccl', { uniqueId: id, rank: env.rank, worldSize: env.worldSize, localRank: env.localRank, localWorldSize: env.localWorldSize, timeoutMs });
}
