#!/usr/bin/env python3
"""Fixture for tests/train/sampler.test.ts: LLaVA's group_by_modality_length sample order and its modality_lengths,
made by LLaVA's own code (llava/train/llava_trainer.py and train.py, commit c121f04), run as is on inputs written here.

  python3 scripts/make_sampler_fixture.py --llava DIR [--out tests/fixtures/sampler/expected.json]

DIR is a checkout of github.com/haotian-liu/LLaVA. The functions split_to_even_chunks, get_length_grouped_indices and
get_modality_length_grouped_indices, and LazySupervisedDataset.modality_lengths, are taken from its source by name
(ast) and executed with a stand-in for torch whose randperm hands out permutations drawn here (Python's random, seed
0) and records them: the test gives our sampler the same permutations, so the two orders must agree index for index.
Plain Python; no torch needed.

Written: {"orders": [{lengths, batch_size, world_size, perms, order}], "lengths": [{records, lengths}]}.
"""
import argparse
import ast
import json
import os
import random


class Perm(list):
    """torch.randperm's result as LLaVA uses it: sliced, .tolist(), iterated."""

    def __getitem__(self, k):
        r = super().__getitem__(k)
        return Perm(r) if isinstance(k, slice) else r

    def tolist(self):
        return list(self)


class FakeTorch:
    def __init__(self, rng):
        self.rng, self.drawn = rng, []

    def randperm(self, n, generator=None):
        p = list(range(n))
        self.rng.shuffle(p)
        self.drawn.append(p)
        return Perm(p)


def functions(source, names):
    tree = ast.parse(source)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            found[node.name] = ast.get_source_segment(source, node)
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"not found in LLaVA's source: {sorted(missing)}")
    return found


def modality_lengths_of(train_py):
    """LazySupervisedDataset.modality_lengths, unbound: called with a stand-in self holding list_data_dict."""
    tree = ast.parse(train_py)
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and cls.name == 'LazySupervisedDataset':
            for node in cls.body:
                if isinstance(node, ast.FunctionDef) and node.name == 'modality_lengths':
                    node.decorator_list = []
                    ns = {}
                    exec(compile(ast.Module(body=[node], type_ignores=[]), 'train.py', 'exec'), ns)
                    return ns['modality_lengths']
    raise SystemExit("LazySupervisedDataset.modality_lengths not found in LLaVA's train.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--llava', required=True)
    ap.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'sampler', 'expected.json'))
    a = ap.parse_args()
    with open(os.path.join(a.llava, 'llava', 'train', 'llava_trainer.py')) as f:
        src = f.read()
    fns = functions(src, ['split_to_even_chunks', 'get_length_grouped_indices', 'get_modality_length_grouped_indices'])
    rng = random.Random(0)
    torch = FakeTorch(rng)
    ns = {'torch': torch}
    for code in fns.values():
        exec(code, ns)

    def lengths(n_mm, n_lang, lo=1, hi=60):
        ls = [rng.randint(lo, hi) for _ in range(n_mm)] + [-rng.randint(lo, hi) for _ in range(n_lang)]
        rng.shuffle(ls)
        return ls

    cases = [
        (lengths(40, 17), 4, 2),        # both modalities, leftovers of each
        (lengths(48, 16), 4, 2),        # both, each a whole number of megabatches (the last still goes to the leftover)
        (lengths(23, 0), 3, 1),         # images only: get_length_grouped_indices on the raw lengths
        (lengths(0, 19), 2, 3),         # text only: raw (negative) lengths, so the shortest first
        (lengths(5, 3), 4, 2),          # less than one megabatch of either
        (lengths(30, 30, 5, 7), 2, 4),  # many ties (lengths 5..7): the sort keeps the random order
        (lengths(37, 11), 1, 1),        # batch 1: no grouping left but the modality split
        (lengths(26, 9), 5, 3),         # megabatches of 15: a partial one with 26 % 15 = 11, not a multiple of 3
        (lengths(1, 1), 2, 2),
        ([], 2, 2),
    ]
    orders = []
    for ls, bs, ws in cases:
        torch.drawn = []
        order = ns['get_modality_length_grouped_indices'](ls, bs, ws)
        orders.append({'lengths': ls, 'batch_size': bs, 'world_size': ws, 'perms': torch.drawn, 'order': [int(i) for i in order]})

    with open(os.path.join(a.llava, 'llava', 'train', 'train.py')) as f:
        modality_lengths = modality_lengths_of(f.read())
    records = [
        {'image': 'a.png', 'conversations': [{'from': 'human', 'value': '<image>\nWhat is it?'}, {'from': 'gpt', 'value': 'A cat.'}]},
        {'conversations': [{'from': 'human', 'value': 'Say hi.'}, {'from': 'gpt', 'value': '  hi  \n'}]},
        # Python's str.split() separators beyond ASCII, and characters that are not separators (ZWSP, BOM, NEL is)
        {'image': 'b.png', 'conversations': [{'from': 'human', 'value': 'a\x1cb\x1dc\x1ed\x1fe\xa0f\u3000g\u2028h\x85i'}, {'from': 'gpt', 'value': 'j\u200bk\ufeffl\u180em'}]},
        {'conversations': [{'from': 'human', 'value': '一 二\t三\r\n四'}, {'from': 'gpt', 'value': '\u2003five\u205fsix\u202fseven\x0beight\x0cnine'}]},
        {'image': 'c.png', 'conversations': [{'from': 'human', 'value': '<image>'}, {'from': 'gpt', 'value': ''}]},
    ]

    class DS:
        list_data_dict = records

    out = {'orders': orders, 'lengths': {'records': records, 'lengths': modality_lengths(DS())}}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, 'w') as f:
        json.dump(out, f, ensure_ascii=True)
        f.write('\n')
    print(f'wrote {a.out}: {len(orders)} orders, {len(records)} records')


if __name__ == '__main__':
    main()
