// LLaVA's group_by_modality_length sampler (llava/train/llava_trainer.py, LengthGroupedSampler with
// group_by_modality=True), step for step, with the permutations drawn from our seeded generator instead of torch's:
//   - image records and text-only records are ordered separately: a random permutation cut into megabatches of
//     batchSize x chunks samples (one optimizer step over every rank), each sorted by length (longest first, stable)
//     and dealt into `chunks` batches of even total length;
//   - both orders are cut into megabatches again, the two last (partial) ones put aside, the rest shuffled together;
//   - the two leftovers, merged and sorted by sample index, come last.
// So each batch holds one modality and samples of similar length (less padding, and LLaVA-1.5's finetune.sh trains
// so). chunks is LLaVA's world_size argument: ranks x gradient accumulation (LLaVATrainer._get_train_sampler), so a
// step's samples are the same for any split of samplesPerStep into ranks and accumulation.
// Lengths are LLaVA's modality_lengths: the whitespace-separated words of a record's turns, negative for text-only.

/** Python's str.split() separators: Unicode White_Space plus the information separators U+001C-U+001F. */
const PY_WHITESPACE = /[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/**
 * A record's length as LLaVA's LazySupervisedDataset.modality_lengths gives it: the words of its turns (str.split()),
 * negative when it has no image. A text-only record of blank turns, where LLaVA's sampler asserts, counts -1.
 */
export function modalityLength(turns: readonly { value: string }[], hasImage: boolean): number {
  let words = 0;
  for (const t of turns) words += t.value.split(PY_WHITESPACE).filter((w) => w !== '').length;
  return hasImage ? words : -Math.max(words, 1);
}

/** llava_trainer.split_to_even_chunks: indices (sorted longest first) dealt into n batches of even total length. */
export function splitToEvenChunks(indices: readonly number[], lengths: ArrayLike<number>, n: number): number[][] {
  if (indices.length % n !== 0) return Array.from({ length: n }, (_, c) => indices.filter((_, k) => k % n === c));
  const per = indices.length / n;
  const chunks: number[][] = Array.from({ length: n }, () => []);
  const totals = new Array<number>(n).fill(0);
  for (const i of indices) {
    let shortest = 0;
    for (let c = 1; c < n; c++) if (totals[c] < totals[shortest]) shortest = c;
    chunks[shortest].push(i);
    totals[shortest] += lengths[i];
    if (chunks[shortest].length === per) totals[shortest] = Infinity;
  }
  return chunks;
}

/** llava_trainer.get_length_grouped_indices; randperm(n) is torch.randperm's part (a permutation of 0..n-1). */
export function lengthGroupedIndices(lengths: ArrayLike<number>, batchSize: number, chunks: number, randperm: (n: number) => number[]): number[] {
  const perm = randperm(lengths.length), mega = batchSize * chunks, out: number[] = [];
  for (let i = 0; i < perm.length; i += mega) {
    // Array.prototype.sort is stable, as Python's sorted: ties keep their random order
    const sorted = perm.slice(i, i + mega).sort((a, b) => lengths[b] - lengths[a]);
    for (const chunk of splitToEvenChunks(sorted, lengths, chunks)) out.push(...chunk);
  }
  return out;
}

/**
 * llava_trainer.get_modality_length_grouped_indices: the sample order of an epoch for signed lengths (> 0: with an
 * image, < 0: text only; zero is refused, as LLaVA asserts). randperm is called three times when both modalities are
 * present (image records, text records, megabatches), once otherwise.
 */
export function modalityLengthGroupedIndices(lengths: ArrayLike<number>, batchSize: number, chunks: number, randperm: (n: number) => number[]): number[] {
  const mm: number[] = [], lang: number[] = [];
  for (let i = 0; i < lengths.length; i++) {
    const l = lengths[i];
    if (!(Number.isFinite(l) && l !== 0)) throw new RangeError(`modality length ${i} must be a finite non-zero number (> 0: with an image, < 0: text only), got ${l}`);
    (l > 0 ? mm : lang).push(i);
  }
  if (mm.length === 0 || lang.length === 0) return lengthGroupedIndices(lengths, batchSize, chunks, randperm);
  const abs = (ids: number[]) => ids.map((i) => Math.abs(lengths[i]));
  const mmOrder = lengthGroupedIndices(abs(mm), batchSize, chunks, randperm).map((k) => mm[k]);
  const langOrder = lengthGroupedIndices(abs(lang), batchSize, chunks, randperm).map((k) => lang[k]);
  const mega = batchSize * chunks;
  const cut = (o: number[]) => Array.from({ length: Math.ceil(o.length / mega) }, (_, k) => o.slice(k * mega, (k + 1) * mega));
  const mmMega = cut(mmOrder), langMega = cut(langOrder);
  const leftover = [...mmMega.pop()!, ...langMega.pop()!].sort((a, b) => a - b);
  const full = [...mmMega, ...langMega];
  const out: number[] = [];
  for (const k of randperm(full.length)) out.push(...full[k]);
  out.push(...leftover);
  return out;
}
