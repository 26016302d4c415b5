// BPE as the Rust `tokenizers` library runs it (models/bpe: merge_word, then Word::merge_all), put in place of the
// @huggingface/tokenizers JavaScript BPE model's step by TextTokenizer.
//
// Why not the JavaScript model: it merges strings and looks them up afterwards, so its ids differ from transformers'
// wherever the characters are not simply vocabulary entries (tests/fixtures/bpe, made by the Rust library):
// - byte pieces: it never merges them ("é" as <0xC3> <0xA9> where the merge <0xC3><0xA9> exists), and writes a
//   pending unknown before them;
// - no unk token: it wrote id 0 for an unknown character, where Rust drops it and merges across the gap;
// - continuing_subword_prefix / end_of_word_suffix: it ignored the prefix when looking characters up.
// Its pair lookup also built a JSON string per candidate pair: 2.2-3x slower to prepare a LLaVA record
// (benchmarks/prepare_file.ts).
//
// Rust's rules, kept here:
// - Each character (a code point, with continuing_subword_prefix unless first and end_of_word_suffix if last) is its
//   vocabulary id; else, with byte_fallback, its UTF-8 bytes as <0xXX> pieces when all exist; else the unk token,
//   consecutive unknowns fused into one when fuse_unk (a pending unknown is written when the next known character
//   comes, not before byte pieces: Rust's order).
// - Merges apply on ids: a min-heap of (rank, position); an entry whose pair no longer gives its new id is stale.
// - ignore_merges: a word that is itself in the vocabulary is one token.
// - A merge list with a pair twice keeps the later rank (Rust collects the list into a map).
const UTF8 = new TextEncoder();

/** Rust's BPE over one pre-tokenized word, returning the tokens' strings (the Tokenizer maps them to ids). */
export class RustBpe {
  private readonly vocab = new Map<string, number>();
  private readonly vocabR: string[] = [];
  /** mergeOf[left id] maps a right id to the merge's index; rank = that index, result = mergeNew[index]. */
  private readonly mergeOf: (Map<number, number> | undefined)[] = [];
  private readonly mergeNew: Int32Array;
  private readonly unkToken: string | null;
  private readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly prefix: string | null;
  private readonly suffix: string | null;
  private readonly byteIds: (number | undefined)[] = [];
  private readonly cache = new Map<string, string[]>();

  /** model: tokenizer.json's "model" object of type BPE. */
  constructor(model: Record<string, unknown>) {
    const where = 'tokenizer.json model (BPE)';
    const vocab = model.vocab;
    if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) throw new Error(`${where}: "vocab" is not an object of token: id`);
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${where}: vocab entry ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected an integer >= 0`);
      this.vocab.set(token, id as number);
      this.vocabR[id as number] = token;
    }
    const dropout = model.dropout;
    if (dropout !== undefined && dropout !== null && dropout !== 0) {
      throw new Error(`${where}: "dropout" ${JSON.stringify(dropout)} is not supported (tokenisation here is deterministic; set it to null)`);
    }
    this.unkToken = typeof model.unk_token === 'string' ? model.unk_token : null;
    this.byteFallback = model.byte_fallback === true;
    this.fuseUnk = model.fuse_unk === true;
    this.ignoreMerges = model.ignore_merges === true;
    this.prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : null;
    this.suffix = typeof model.end_of_word_suffix === 'string' ? model.end_of_word_suffix : null;
    const merges = model.merges ?? [];
    if (!Array.isArray(merges)) throw new Error(`${where}: "merges" is ${typeof merges}, expected an array`);
    this.mergeNew = new Int32Array(merges.length);
    const prefixLen = this.prefix?.length ?? 0;
    merges.forEach((m: unknown, i: number) => {
      let pair: unknown[];
      if (typeof m === 'string') {
        const space = m.indexOf(' ');
        pair = space < 0 ? [m] : [m.slice(0, space), m.slice(space + 1)];
      } else pair = Array.isArray(m) ? m : [];
      const [a, b] = pair;
      if (pair.length !== 2 || typeof a !== 'string' || typeof b !== 'string') {
        throw new Error(`${where}: merge ${i} is ${JSON.stringify(m)}, expected "a b" or ["a", "b"]`);
      }
      const aId = this.vocab.get(a);
      const bId = this.vocab.get(b);
      // Rust strips the continuing-subword prefix of the right part when it names the merged token
      const merged = a + (prefixLen > 0 && b.startsWith(this.prefix!) ? b.slice(prefixLen) : b);
      const newId = this.vocab.get(merged);
      if (aId === undefined || bId === undefined || newId === undefined) {
        const missing = aId === undefined ? a : bId === undefined ? b : merged;
        throw new Error(`${where}: merge ${i} (${JSON.stringify(a)}, ${JSON.stringify(b)}) names ${JSON.stringify(missing)}, which is not in the vocabulary`);
      }
      const row = this.mergeOf[aId] ?? (this.mergeOf[aId] = new Map());
      row.set(bId, i);
      this.mergeNew[i] = newId;
    });
    if (this.byteFallback) {
      for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    }
  }

  /** The tokens of each pre-tokenized word, concatenated (what the JavaScript Tokenizer expects of a model). */
  tokenize(words: string[]): string[] {
    const out: string[] = [];
    for (const w of words) for (const t of this.word(w)) out.push(t);
    return out;
  }

  private word(w: string): string[] {
    if (w.length === 0) return [];
    if (this.ignoreMerges) {
      const id = this.vocab.get(w);
      if (id !== undefined) return [w];
    }
    const hit = this.cache.get(w);
    if (hit !== undefined) return hit;
    const ids = this.mergeAll(this.symbols(w));
    const tokens = Array.from(ids, (id) => this.vocabR[id]);
    if (w.length < 256) {
      if (this.cache.size >= 10000) this.cache.clear();
      this.cache.set(w, tokens);
    }
    return tokens;
  }

  private unkId(): number {
    const id = this.vocab.get(this.unkToken!);
    if (id === undefined) throw new Error(`tokenizer.json model (BPE): unk_token ${JSON.stringify(this.unkToken)} is not in the vocabulary`);
    return id;
  }

  /** merge_word's first half: the word's characters as ids (byte pieces, unknowns), before any merge. */
  private symbols(w: string): number[] {
    const ids: number[] = [];
    let unkPending = false; // Rust's `unk`: one unknown (possibly fused) not yet written
    const chars = Array.from(w);
    for (let i = 0; i < chars.length; i++) {
      let s = chars[i];
      if (i > 0 && this.prefix !== null) s = this.prefix + s;
      if (i === chars.length - 1 && this.suffix !== null) s = s + this.suffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (unkPending) ids.push(this.unkId());
        unkPending = false;
        ids.push(id);
        continue;
      }
      if (this.byteFallback) {
        const bytes = UTF8.encode(s);
        const pieces = Array.from(bytes, (b) => this.byteIds[b]);
        if (pieces.every((p) => p !== undefined)) {
          for (const p of pieces) ids.push(p as number); // before a pending unknown, as Rust writes them
          continue;
        }
      }
      if (this.unkToken !== null) {
        if (unkPending && !this.fuseUnk) ids.push(this.unkId());
        else if (!unkPending) this.unkId(); // the error, where Rust raises it
        unkPending = true;
      }
      // no unk token: Rust drops the character
    }
    if (unkPending) ids.push(this.unkId());
    return ids;
  }

  /** Word::merge_all without dropout: lowest rank first, then leftmost. */
  private mergeAll(c: number[]): number[] {
    const n = c.length;
    if (n < 2) return c;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new MergeHeap(n);
    const rankOf = (a: number, b: number): number => this.mergeOf[a]?.get(b) ?? -1;
    for (let i = 0; i + 1 < n; i++) {
      const r = rankOf(c[i], c[i + 1]);
      if (r >= 0) heap.push(r, i);
    }
    while (heap.size > 0) {
      const rank = heap.topRank();
      const pos = heap.pop();
      const newId = this.mergeNew[rank];
      if (!alive[pos] || next[pos] < 0) continue;
      const right = next[pos];
      const r = rankOf(c[pos], c[right]);
      if (r < 0 || this.mergeNew[r] !== newId) continue; // stale: the pair changed since it was queued
      c[pos] = newId;
      alive[right] = 0;
      next[pos] = next[right];
      if (next[right] >= 0) prev[next[right]] = pos;
      const p = prev[pos];
      if (p >= 0) {
        const rp = rankOf(c[p], c[pos]);
        if (rp >= 0) heap.push(rp, p);
      }
      const q = next[pos];
      if (q >= 0) {
        const rq = rankOf(c[pos], c[q]);
        if (rq >= 0) heap.push(rq, pos);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(c[i]);
    return out;
  }
}

/** A binary min-heap of (rank, position) pairs, ordered by rank, then position (Rust's `Merge` ordering). */
class MergeHeap {
  private rank: Int32Array;
  private pos: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.rank = new Int32Array(Math.max(4, capacity));
    this.pos = new Int32Array(Math.max(4, capacity));
  }

  private less(i: number, j: number): boolean {
    return this.rank[i] < this.rank[j] || (this.rank[i] === this.rank[j] && this.pos[i] < this.pos[j]);
  }

  private swap(i: number, j: number): void {
    const r = this.rank[i];
    this.rank[i] = this.rank[j];
    this.rank[j] = r;
    const p = this.pos[i];
    this.pos[i] = this.pos[j];
    this.pos[j] = p;
  }

  push(rank: number, pos: number): void {
    if (this.size === this.rank.length) {
      const r = new Int32Array(this.size * 2);
      r.set(this.rank);
      this.rank = r;
      const p = new Int32Array(this.size * 2);
      p.set(this.pos);
      this.pos = p;
    }
    let i = this.size++;
    this.rank[i] = rank;
    this.pos[i] = pos;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  topRank(): number {
    return this.rank[0];
  }

  /** Removes the top entry; returns its position. */
  pop(): number {
    const top = this.pos[0];
    this.size--;
    if (this.size > 0) {
      this.rank[0] = this.rank[this.size];
      this.pos[0] = this.pos[this.size];
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.size && this.less(l, m)) m = l;
        if (r < this.size && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}
