// Where the CPU addon finds its MPI backend (libvwlmm_mpi.so, dlopened from the folder the addon itself was loaded
// from: native/napi/addon_cpu.cc) and what it says when it cannot: a prebuild's layout (scripts/prebuild.js puts the
// library beside vwlmm.napi.glibc.node) runs collectives over 2 ranks; a folder without the library, and one whose
// library needs an MPI that is not installed, report why and what to install, in backendInfo().cpu.mpi and in
// initProcessGroup's error; the npm package's `files` ship the library. Each load is a child process (a process
// loads an addon once). The MPI cases need this build's libvwlmm_mpi.so (Open MPI installed at build time): they
// skip without it, unless VWLMM_REQUIRE_MPI=1 (CI).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { launchRanks } from '../../src/distributed/launch';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const tmp = tempDirs('mpi-loading');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const addon: string = process.env.VWLMM_ADDON ?? (require('node-gyp-build') as { resolve(dir: string): string }).resolve(root);
const backend = path.join(path.dirname(addon), 'libvwlmm_mpi.so');
const haveBackend = fs.existsSync(backend);
const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const required = process.env.VWLMM_REQUIRE_MPI === '1';
const linux = process.platform === 'linux';
const tuple = `${process.platform}-${process.arch}`;

interface MpiInfo { library: string; built: boolean; available: boolean; version?: string; mpiLibrary?: string; reason?: string }

/** In a fresh process: the addon `file` (or what node-gyp-build picks in the package folder `pkg`), its backendInfo().mpi and initProcessGroup's error. */
function probe(o: { file?: string; pkg?: string }): { file: string; mpi: MpiInfo; initError: string | null } {
  const code = `
    const ngb = require(${JSON.stringify(require.resolve('node-gyp-build'))});
    const file = ${o.pkg ? `ngb.resolve(${JSON.stringify(o.pkg)})` : JSON.stringify(o.file)};
    process.env.VWLMM_ADDON = file;
    const mpi = require(file).backendInfo().mpi;
    let initError = null;
    // only where the backend cannot load: a working one would start MPI here
    const start = mpi.available ? Promise.resolve() : Promise.resolve()
      .then(() => require(${JSON.stringify(path.join(root, 'src', 'distributed', 'process_group.ts'))}).initProcessGroup({ backend: 'mpi', timeoutMs: 5000 }))
      .then(() => { initError = 'no error'; }, (e) => { initError = e.message; });
    start.then(() => console.log(JSON.stringify({ file, mpi, initError })));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** A package folder laid out as scripts/prebuild.js lays out prebuilds/, with this build's files. */
function prebuildLayout(withBackend: boolean): { pkg: string; dir: string } {
  const pkg = tmp(), dir = path.join(pkg, 'prebuilds', tuple);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(addon, path.join(dir, 'vwlmm.napi.glibc.node'));
  if (withBackend) fs.copyFileSync(backend, path.join(dir, 'libvwlmm_mpi.so'));
  return { pkg, dir };
}

describe.skipIf(!linux)('the MPI backend beside the CPU addon', () => {
  it('is there in this build where it must be', () => {
    if (required) expect(haveBackend, `${backend} (VWLMM_REQUIRE_MPI=1)`).toBe(true);
  });

  it.skipIf(!(haveBackend && haveMpirun) && !required)('a prebuild folder holds it: the addon loaded from there finds it beside itself, and 2 ranks run collectives through it', async () => {
    const { pkg, dir } = prebuildLayout(true);
    const got = probe({ pkg });
    expect(got.file).toBe(path.join(dir, 'vwlmm.napi.glibc.node'));
    expect(got.mpi).toMatchObject({ library: path.join(dir, 'libvwlmm_mpi.so'), built: true, available: true });
    expect(got.mpi.version).toMatch(/MPI/);
    expect(got.mpi.mpiLibrary).toMatch(/\/libmpi\.so\.\d+/);
    const out = tmp();
    const r = await launchRanks({ nproc: 2, backend: 'mpi', stdio: 'pipe', env: { ...process.env, VWLMM_ADDON: got.file }, graceMs: 2000,
      command: [process.execPath, '--import', 'tsx', path.join(__dirname, 'support', 'rank_child.ts'), 'collectives', out, '{}'] });
    expect(r.failure, r.output.join('\n')).toBeNull();
    const rank1 = JSON.parse(fs.readFileSync(path.join(out, 'rank_1.json'), 'utf8')) as { worldSize: number; library: string; out: Record<string, number[]> };
    expect(rank1.worldSize).toBe(2);
    expect(rank1.library).toBe(got.mpi.version);
    expect(rank1.out['all_reduce_int32/sum/7']).toEqual([0, 3, 6, 9, 12, 15, 18]);
  }, 60_000);

  it('a folder without it says it is not there, that this build found no MPI, and what to install', () => {
    const { pkg, dir } = prebuildLayout(false);
    const got = probe({ pkg });
    expect(got.mpi).toMatchObject({ library: path.join(dir, 'libvwlmm_mpi.so'), built: false, available: false });
    for (const text of [got.mpi.reason, got.initError]) {
      expect(text).toMatch(/the MPI backend \S+\/libvwlmm_mpi\.so is not there: this vwlmm\.node was built where no MPI was found/);
      expect(text).toMatch(/apt install libopenmpi-dev openmpi-bin\) and build vwlmm from source[^]*VWLMM_BUILD_FROM_SOURCE=1 npm install vwlmm/);
    }
  });

  it.skipIf(!haveBackend && !required)('one whose MPI library is not installed names that library, the reason dlopen gave, and what to install', () => {
    // a copy of this build's backend whose NEEDED libmpi.so.N reads libmpi.so.9...9 (same length): a machine
    // without the MPI the prebuild was linked against
    const dir = tmp();
    fs.copyFileSync(addon, path.join(dir, 'vwlmm.node'));
    const bytes = fs.readFileSync(backend), text = bytes.toString('latin1');
    const m = /libmpi\.so\.(\d+)\0/.exec(text);
    expect(m, `${backend} names no libmpi.so.N`).not.toBeNull();
    const at = m!.index + 'libmpi.so.'.length;
    bytes.fill('9'.charCodeAt(0), at, at + m![1].length);
    fs.writeFileSync(path.join(dir, 'libvwlmm_mpi.so'), bytes);
    const missing = `libmpi.so.${'9'.repeat(m![1].length)}`;
    const got = probe({ file: path.join(dir, 'vwlmm.node') });
    expect(got.mpi).toMatchObject({ library: path.join(dir, 'libvwlmm_mpi.so'), built: true, available: false });
    for (const t of [got.mpi.reason, got.initError]) {
      expect(t).toContain(`the MPI backend ${path.join(dir, 'libvwlmm_mpi.so')} could not be loaded: ${missing}: cannot open shared object file`);
      expect(t).toMatch(/Install the MPI it was linked against \(Open MPI's libmpi\.so\.40: apt install openmpi-bin libopenmpi-dev\), or build vwlmm from source[^]*VWLMM_BUILD_FROM_SOURCE=1/);
    }
  });

  it("the npm package's files ship it (prebuilds/ is git-ignored, not npm-ignored)", () => {
    // the package's own package.json and .gitignore, with a prebuild folder as scripts/prebuild.js leaves it
    const pkg = tmp();
    for (const f of ['package.json', '.gitignore']) fs.copyFileSync(path.join(root, f), path.join(pkg, f));
    fs.mkdirSync(path.join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
    for (const f of ['vwlmm.napi.glibc.node', 'libvwlmm_mpi.so']) fs.writeFileSync(path.join(pkg, 'prebuilds', 'linux-x64', f), f);
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkg, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['prebuilds/linux-x64/vwlmm.napi.glibc.node', 'prebuilds/linux-x64/libvwlmm_mpi.so']));
  });
});
