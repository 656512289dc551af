#!/usr/bin/env python3
"""Breaks a `perf record -g --call-graph dwarf` profile of a Switchboard cluster
down per process: the tokio task (future type) each sample was polling, the
system call it was in, and the leaf symbols.

  perf script -i perf.data -F tid,ip,sym,dso > samples.txt
  loadtest/perf-tasks.py samples.txt router=TID gw0=TID gw1=TID redis=TID

TIDs are the worker threads (`ls /proc/PID/task`); see docs/benchmarks.md."""
import re, sys, collections

names = dict(a.split('=') for a in sys.argv[2:])
tid2name = {v: k for k, v in names.items()}

def samples(path):
    tid, frames = None, []
    for line in open(path, errors='replace'):
        if not line.strip():
            if tid is not None:
                yield tid, frames
            tid, frames = None, []
            continue
        if not line.startswith('\t') and re.match(r'\s*\d+(\s|$)', line):
            if tid is not None:
                yield tid, frames
            parts = line.split()
            tid, frames = parts[0], []
            # the header line may carry the leaf frame
            rest = line.split(None, 2)[2:] if len(parts) > 2 else []
            if rest:
                frames.append(rest[0].strip())
        else:
            frames.append(line.strip().split(None, 1)[1] if len(line.split()) > 1 else '')
    if tid is not None:
        yield tid, frames

TASK = re.compile(r'Stage<(.*)')
def task_of(frames):
    # the task being polled: the innermost task frame
    for f in frames:
        m = TASK.search(f)
        if m:
            t = m.group(1)
            t = re.sub(r'alloc::sync::Arc<tokio::runtime::scheduler.*', '', t)
            t = t.replace('tokio_util::task::task_tracker::TrackedFuture<', '')
            return t[:110]
    for f in frames:
        if 'park_internal' in f or 'Driver::turn' in f or 'park_timeout' in f:
            return 'tokio: park (epoll_wait, timers)'
    for f in frames:
        if 'run_task' in f or 'worker::run' in f:
            return 'tokio: scheduler'
    return '(no task in chain)'

SYS = re.compile(r'__x64_sys_(\w+)|__sys_(\w+)')
def syscall_of(frames):
    # the first user-space frame above the syscall entry names the call
    for i, f in enumerate(frames):
        if 'entry_SYSCALL_64' in f:
            for g in frames[i + 1:]:
                if '[kernel' not in g:
                    return re.sub(r'\s*\(.*\)$', '', g)
    return None

def leaf_kind(frames):
    if not frames:
        return '?'
    leaf = frames[0]
    if '[kernel.kallsyms]' in leaf:
        if any(x in ' '.join(frames[:6]) for x in ('finish_task_switch', '__schedule')):
            return 'kernel: context switch'
        return 'kernel'
    return 'user'

by_proc = collections.Counter()
by_task = collections.defaultdict(collections.Counter)
by_sys = collections.defaultdict(collections.Counter)
by_leaf = collections.defaultdict(collections.Counter)
by_user_sym = collections.defaultdict(collections.Counter)
for tid, frames in samples(sys.argv[1]):
    p = tid2name.get(tid, tid)
    by_proc[p] += 1
    by_task[p][task_of(frames)] += 1
    s = syscall_of(frames)
    by_sys[p][s or '(user space / no syscall)'] += 1
    by_leaf[p][leaf_kind(frames)] += 1
    if frames:
        by_user_sym[p][re.sub(r'\s*\((/|\[).*\)$', '', frames[0])[:90]] += 1
total = sum(by_proc.values())
print(f'total samples {total}')
for p, n in by_proc.most_common():
    print(f'\n== {p}: {n} samples, {100*n/total:.1f}% of all')
    print('  leaf:', ', '.join(f'{k} {100*v/n:.0f}%' for k, v in by_leaf[p].most_common()))
    print('  syscalls:', ', '.join(f'{k} {100*v/n:.0f}%' for k, v in by_sys[p].most_common(8)))
    print('  leaf symbols:', '; '.join(f'{k} {100*v/n:.1f}%' for k, v in by_user_sym[p].most_common(10)))
    print('  tasks:')
    for k, v in by_task[p].most_common(12):
        print(f'    {100*v/n:5.1f}%  {k}')
