// LLaVA's split_list / get_chunk (llava/eval/model_vqa*.py --num-chunks / --chunk-idx), shared by the question readers.

/** LLaVA's split_list / get_chunk: ceil(n / numChunks) questions per chunk, the k-th chunk. */
export function chunkOf<T>(items: readonly T[], numChunks: number, chunkIdx: number): T[] {
  if (!Number.isInteger(numChunks) || numChunks < 1) throw new RangeError(`answer: numChunks must be an integer >= 1, got ${numChunks}`);
  if (!Number.isInteger(chunkIdx) || chunkIdx < 0 || chunkIdx >= numChunks) throw new RangeError(`answer: chunkIdx must be in [0, ${numChunks}), got ${chunkIdx}`);
  const size = Math.ceil(items.length / numChunks);
  return size === 0 ? [] : items.slice(chunkIdx * size, chunkIdx * size + size);
}
