#!/usr/bin/env python3
"""Where the daemons' CPU goes, from a system-wide `perf record -g` of a swarm run.

Usage (as root; see bench/RESULTS.md for the run it was made for):
  npm run bench:swarm -- --n 8 --image small --modes p2p --node-options '--perf-basic-prof' ... &
  perf record -e cpu-clock -F 499 -a -g -o run.perf -- sleep 10     # started once skopeo runs
  perf script -i run.perf -F pid,ip,sym > run.script
  python3 bench/swarm/perf-categories.py run.script PID=supernode,PID=dfd,...

Each sample is put in one category by its stack (TurboFan compiles, GC, parsing, hashing, kernel
network / file system, else JavaScript and the runtime), per role; JavaScript samples are also
listed by their innermost JS frame. --perf-basic-prof gives V8's frames names.
"""
import sys, re, collections
path, roles = sys.argv[1], dict(a.split('=') for a in sys.argv[2].split(','))
cat = collections.Counter(); js = collections.Counter(); tot = collections.Counter()
def classify(frames):
    s = ' | '.join(frames)
    if 'OptimizingCompileDispatcher' in s or 'Maglev' in s and 'Compile' in s: return 'jit-opt-compile'
    if re.search(r'Scavenger|MarkCompact|ConcurrentMarking|Sweeper|Heap::Collect|MinorMark|IncrementalMarking|HeapObject::SizeFromMap|Marking', s): return 'gc'
    if re.search(r'v8::internal::Parser|v8::internal::ParserBase|Scanner::|CompileLazy|Compiler::Compile|BytecodeGenerator|CalculateLineEnds|baseline::', s): return 'parse/bytecode/baseline-compile'
    if re.search(r'sha256_block|md5_block|sha1_block', s): return 'hash'
    kern = [f for f in frames if f.startswith('K:')]
    if kern:
        if re.search(r'tcp_|inet_|sock_|ip_|__dev|netif|veth|skb|sch_|tbf', s): return 'kernel-net'
        if re.search(r'ext4|vfs_|filemap|page_cache|generic_perform|iomap|folio', s): return 'kernel-fs'
        if re.search(r'epoll|futex|schedule|clock', s): return 'kernel-other(epoll/futex/sched)'
        return 'kernel-other'
    return 'user'
cur = None; frames = []
def flush():
    global cur, frames
    if cur is None: return
    role = roles.get(cur)
    if role:
        c = classify(frames); cat[(role, c)] += 1; tot[role] += 1
        if c == 'user':
            j = next((f for f in frames if f.startswith('JS:')), None)
            key = j[:90] if j else ('native:' + (frames[0][:60] if frames else '?'))
            js[(role, key)] += 1
    cur = None; frames = []
for line in open(path, errors='replace'):
    if not line.strip(): flush(); continue
    if not line.startswith('\t'):
        flush(); cur = line.split()[0]; continue
    parts = line.strip().split(None, 1)
    sym = parts[1] if len(parts) > 1 else '?'
    addr = parts[0]
    if addr.startswith('ffffffff'): sym = 'K:' + sym
    frames.append(sym)
flush()
for role in sorted(tot):
    print(f'== {role}: {tot[role]} samples')
    for (r, c), n in sorted(cat.items(), key=lambda x: -x[1]):
        if r == role: print(f'  {100*n/tot[role]:5.1f}% {c}')
    print('  -- user, by innermost JS frame:')
    for (r, k), n in sorted(js.items(), key=lambda x: -x[1])[:400]:
        if r == role and n/tot[role] > 0.006: print(f'  {100*n/tot[role]:5.1f}% {k}')
