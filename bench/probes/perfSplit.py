#!/usr/bin/env python3
"""Where an edge's CPU samples go, from `perf script -F comm,tid,time,ip,sym,dso` on stdin (bench/probes/perfEdge.sh).

Prints the kernel's share (samples whose innermost frame is in the kernel) and the agent's samples by area: each
sample counts for the first frame, from the innermost out, that names one of AREAS (so the PUBACK writes made
inside an outbox commit count as PUBACK writes). --from/--to keep the samples of a time window (seconds after the
first sample); --top also prints the frames most often on the stack.

A JavaScript frame's name comes from node's --perf-basic-prof map, which keeps the names of code V8 has since
moved or freed: now and then a frame carries a stale name (a `sweep` of the keepalive between an outbox commit and
SQLite, say). Areas matched on native frames (SQLite, GC, the compiler, the kernel) are not affected.
"""
import argparse
import collections
import re
import sys

AREAS = [
    ('SQLite', r'better_sqlite3|better-sqlite3'),
    ('PUBACK writes', r'broker/core/acks\.js'),
    ('upstream pump', r'JS:.*(pump|send|encodeQos1Publishes).*(bridge|publishPacket)\.js'),
    ('mqtt.js (upstream PUBACKs)', r'node_modules/mqtt/'),
    ('upstream PUBACK tap', r'sync/pubackTap\.js'),
    ('aedes routing', r'node_modules/(aedes|mqemitter|qlobber|fastfall|fastseries)'),
    ('mqtt-packet', r'mqtt-packet/'),
    ('outbox (JS)', r'database/outbox\.js'),
    ('core', r'broker/core/'),
    ('read stream machinery', r'JS:.*(onStreamRead|streams/readable)|OnUvRead'),
    ('GC', r'Scavenger|MarkCompact|ConcurrentMarking|Sweeper|Heap::|GCTracer|Marking'),
    ('V8 optimizing compiler', r'OptimizingCompileDispatcher|PipelineCompilationJob'),
    ('accepting sockets', r'onconnection|OnConnection'),
]


def samples(lines):
    block = []
    for line in lines:
        if line.strip():
            block.append(line.rstrip('\n'))
        elif block:
            yield block
            block = []
    if block:
        yield block


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--from', dest='start', type=float, default=0.0)
    ap.add_argument('--to', dest='end', type=float, default=float('inf'))
    ap.add_argument('--top', action='store_true')
    a = ap.parse_args()
    areas = [(name, re.compile(rx)) for name, rx in AREAS]
    by_area, kernel, on_stack = collections.Counter(), collections.Counter(), collections.Counter()
    first = None
    total = 0
    for block in samples(sys.stdin):
        m = re.search(r'(\d+\.\d+):', block[0])
        if not m or len(block) < 2:
            continue
        t = float(m.group(1))
        first = t if first is None else first
        if not a.start <= t - first < a.end:
            continue
        total += 1
        frames = block[1:]
        name = next((n for f in frames for n, rx in areas if rx.search(f)), 'other')
        by_area[name] += 1
        if 'kernel' in frames[0]:
            kernel[name] += 1
        if a.top:
            for f in set(re.sub(r'^\s*[0-9a-f]+\s+', '', f).split(' (')[0] for f in frames):
                on_stack[f] += 1
    if total == 0:
        sys.exit('no samples in the window')
    print(f'{total} samples; kernel {100 * sum(kernel.values()) / total:.1f}%')
    for name, n in by_area.most_common():
        print(f'  {name:30s} {100 * n / total:5.1f}%  (kernel {100 * kernel[name] / total:4.1f}%)')
    if a.top:
        print('on the stack:')
        for f, n in on_stack.most_common(40):
            print(f'  {100 * n / total:5.1f}%  {f[:130]}')


main()
