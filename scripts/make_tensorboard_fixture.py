#!/usr/bin/env python3
"""Fixture for tests/train/tensorboard.test.ts: TensorBoard event records as TensorBoard's own writer frames them.

  python3 scripts/make_tensorboard_fixture.py [--out tests/fixtures/tensorboard]
  python3 scripts/make_tensorboard_fixture.py --check DIR    # what TensorBoard reads from the event files in DIR

Needs the tensorboard package (2.21 here; pip install tensorboard, from the local package index): its protobuf
messages (tensorboard.compat.proto: Event, Summary, SessionLog) and its RecordWriter (the TFRecord framing: length,
masked CRC-32C of the length, data, masked CRC-32C of the data). No TensorFlow.

Written: events.json, the events to write (a list of {wallTime, fileVersion | sessionStart | [step, tag, value]};
non-finite values as the strings "NaN", "Infinity", "-Infinity"), and events.out.tfevents.1765100000.fixture, the bytes TensorBoard's writer
makes of them. The test gives our writer the same events and wall times and compares the bytes.

--check loads DIR with TensorBoard's EventAccumulator (the loader of `tensorboard --logdir`, purging orphaned data
after a SessionLog START as the server does) and prints, per tag, the (step, value) pairs it keeps.
"""
import argparse
import json
import math
import os


def finite_or_name(v):
    if math.isnan(v):
        return 'NaN'
    if math.isinf(v):
        return 'Infinity' if v > 0 else '-Infinity'
    return v


def make(out):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    events = [
        {'wallTime': 1765100000.125, 'fileVersion': 'brain.Event:2'},
        {'wallTime': 1765100000.25, 'sessionStart': 1},
    ]
    wall = 1765100001.0
    scalars = [
        (1, 'train/loss', 2.302585092994046),
        (1, 'train/learning_rate', 2e-05),
        (1, 'train/grad_norm', 0.0),  # a oneof member: written although it is zero
        (2, 'train/loss', -0.0),
        (2, 'train/kl', float('nan')),
        (3, 'train/ce', float('inf')),
        (3, 'train/ce', float('-inf')),
        (4, 'eval/accuracy', 1e-45),  # a float32 subnormal
        (5, 'eval/accuracy', 3.4e38),
        (6, 'eval/accuracy', 1e39),  # past float32: infinity
        (0, 'train/tokens_per_second', 12345.678),  # step 0: not written (proto3 default)
        (2 ** 40 + 3, 'train/loss', 1.5),  # a step of six varint bytes
        (7, 'eval/r\u00e9ponse \u2713', 0.5),  # a UTF-8 tag
    ]
    for i, (step, tag, value) in enumerate(scalars):
        events.append({'wallTime': wall + i * 0.375, 'step': step, 'tag': tag, 'value': finite_or_name(value)})
    events.append({'wallTime': wall + 10, 'sessionStart': 123456789})

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'events.out.tfevents.1765100000.fixture')
    with open(path, 'wb') as f:
        writer = RecordWriter(f)
        for e in events:
            ev = event_pb2.Event(wall_time=e['wallTime'])
            if 'fileVersion' in e:
                ev.file_version = e['fileVersion']
            elif 'sessionStart' in e:
                ev.step = e['sessionStart']
                ev.session_log.status = event_pb2.SessionLog.START
            else:
                ev.step = e['step']
                ev.summary.value.add(tag=e['tag'], simple_value=float(e['value']))
            writer.write(ev.SerializeToString())
        writer.flush()
    with open(os.path.join(out, 'events.json'), 'w') as f:
        json.dump(events, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes, {len(events)} events)')


def check(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0}, purge_orphaned_data=True)
    acc.Reload()
    tags = acc.Tags()
    out = {}
    # scalars arrive as tensors of the scalars plugin (data_compat migrates simple_value)
    for tag in sorted(tags.get('tensors', [])):
        import numpy as np
        from tensorboard.util import tensor_util
        out[tag] = [(e.step, finite_or_name(float(np.asarray(tensor_util.make_ndarray(e.tensor_proto))))) for e in acc.Tensors(tag)]
    for tag in sorted(tags.get('scalars', [])):
        out[tag] = [(e.step, finite_or_name(e.value)) for e in acc.Scalars(tag)]
    for tag, points in out.items():
        print(json.dumps(tag, ensure_ascii=False), json.dumps(points))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='tests/fixtures/tensorboard')
    ap.add_argument('--check')
    a = ap.parse_args()
    check(a.check) if a.check else make(a.out)
