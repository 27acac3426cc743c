#!/usr/bin/env python3
"""Compares the F32/F16 tensors of two GGUF files (test helper, no dependencies):
    gguf_tensors.py A.gguf B.gguf [--rel TOL]
prints the largest relative difference max|a-b| / max|a| over all tensors and
exits 1 when it exceeds TOL (default 0: bit-identical), or when the two files
hold different tensor names or shapes."""
import struct
import sys

SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def read(path):
    data = open(path, 'rb').read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, data, pos)
        pos += struct.calcsize('<' + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take('Q')
        s = data[pos:pos + n].decode('utf-8', 'replace')
        pos += n
        return s

    def value(t):
        if t in SCALAR:
            return take(SCALAR[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        raise ValueError('%s: unknown metadata type %d' % (path, t))

    if data[:4] != b'GGUF':
        raise ValueError(path + ': not a GGUF file')
    pos = 4
    take('I')
    n_tensors, n_kv = take('Q'), take('Q')
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take('I'))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take('Q') for _ in range(take('I'))]
        infos.append((name, dims, take('I'), take('Q')))
    align = meta.get('general.alignment', 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        n = 1
        for d in dims:
            n *= d
        if t == 0:
            vals = struct.unpack_from('<%df' % n, data, base + off)
        elif t == 1:
            vals = struct.unpack_from('<%de' % n, data, base + off)
        else:
            vals = None  # quantized: compared by shape only
        tensors[name] = (dims, vals)
    return tensors


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    tol = float(sys.argv[sys.argv.index('--rel') + 1]) if '--rel' in sys.argv else 0.0
    if sorted(a) != sorted(b):
        print('tensor names differ')
        return 1
    worst, where = 0.0, ''
    for name in sorted(a):
        (da, va), (db, vb) = a[name], b[name]
        if da != db:
            print('%s: shapes differ %s vs %s' % (name, da, db))
            return 1
        if va is None or vb is None:
            continue
        scale = max(max(abs(x) for x in va), 1e-30)
        diff = max(abs(x - y) for x, y in zip(va, vb))
        if diff / scale > worst or not where:
            worst, where = diff / scale, name
    print('max relative difference %.3g (%s)' % (worst, where))
    return 0 if worst <= tol else 1


if __name__ == '__main__':
    sys.exit(main())
