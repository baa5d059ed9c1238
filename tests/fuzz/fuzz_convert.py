#!/usr/bin/python3
"""Mutation fuzzer for weights_tools/convert.py's zip / pickle reader (a Python harness: libFuzzer
does not run Python).

Seeds are the synthetic checkpoints of tests/test_convert.py (a small GYOLO-shaped model, as 'ema'
and as 'model', stored and deflated). Each iteration mutates one of them:

- the pickle (data.pkl) inside a well-formed zip: byte flips, insertions of pickle opcodes and
  hostile GLOBALs, truncation, splices from another seed;
- a storage entry: truncated, extended, emptied, deflated;
- the zip's own bytes: flips, truncation, a repeated tail;

writes it to a file and runs convert.convert() in this process. The run passes when every input
ends in success or convert.ConvertError. Anything else (another exception, a hang beyond 20 s, an
allocation beyond the 2 GiB address-space limit, a file written outside the output, an executed
pickle global) is a finding: the input is saved under the output folder and the run exits 1.

  /usr/bin/python3 tests/fuzz/fuzz_convert.py [--iterations N] [--seed S] [--out DIR]
"""
import argparse
import io
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))                                   # tests/: test_convert
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'weights_tools'))
import convert  # noqa: E402
import test_convert as tc  # noqa: E402

OPCODES = [b'c', b'\x93', b'R', b'b', b'}', b']', b')', b'(', b't', b'.', b'q\x00', b'h\x00', b'Q',
           b'J\xff\xff\xff\x7f', b'K\x00', b'X\xff\xff\xff\x7f', b'\x8a\x08' + b'\xff' * 8,
           b'cos\nsystem\n', b'cbuiltins\neval\n', b'ctorch._utils\n_rebuild_tensor_v2\n',
           b'ccollections\nOrderedDict\n', b'\x80\x02', b'N', b'\x88', b'G' + b'\x7f\xf0' + b'\0' * 6]


def seeds():
    out = []
    m, _, _ = tc.make_model(seed=3)
    for obj in (tc.make_ckpt(ema=m), tc.make_ckpt(model=m)):
        pkl, storages = tc.pickle_ckpt(obj)
        out.append((pkl, [(k, st.flat.astype(st.flat.dtype.newbyteorder('<')).tobytes()) for k, st in storages.items()]))
    return out


def build_zip(pkl, storages, deflate=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as zf:
        zf.writestr('archive/data.pkl', pkl)
        for k, raw in storages:
            zf.writestr(f'archive/data/{k}', raw, zipfile.ZIP_DEFLATED if k in deflate else zipfile.ZIP_STORED)
        zf.writestr('archive/version', b'3\n')
    return buf.getvalue()


def mutate_bytes(rng, b, max_ops=8):
    b = bytearray(b)
    for _ in range(rng.randint(1, max_ops)):
        op = rng.randrange(6)
        if not b:
            b += bytes([rng.randrange(256)])
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            b[i:i] = rng.choice(OPCODES)
        elif op == 3:
            del b[i:i + rng.randint(1, 16)]
        elif op == 4:
            b[i:i] = b[max(0, i - 32):i]
        else:
            b = b[:i]
    return bytes(b)


def mutant(rng, pool):
    pkl, storages = rng.choice(pool)
    storages = list(storages)
    kind = rng.randrange(4)
    deflate = {k for k, _ in storages if rng.random() < 0.3}
    if kind == 0:
        pkl = mutate_bytes(rng, pkl)
    elif kind == 1 and storages:
        j = rng.randrange(len(storages))
        k, raw = storages[j]
        raw = rng.choice([raw[:rng.randrange(len(raw) + 1)], raw + raw, b'', mutate_bytes(rng, raw)])
        storages[j] = (k, raw)
    elif kind == 2:
        other, _ = rng.choice(pool)
        i, j = rng.randrange(len(pkl)), rng.randrange(len(other))
        pkl = pkl[:i] + other[j:j + rng.randint(1, 64)] + pkl[i:]
    data = build_zip(pkl, storages, deflate)
    if kind == 3:
        data = mutate_bytes(rng, data, 4)
    return data


class Hang(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--iterations', type=int, default=2000)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help='where findings and the scratch files go')
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix='gyolo_fuzz_convert_')
    os.makedirs(out, exist_ok=True)
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    def on_alarm(*_):
        raise Hang()
    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(a.seed)
    pool = seeds()
    src, dst = os.path.join(out, 'input.pt'), os.path.join(out, 'out.gguf')
    marker = tc.MARKER
    outcomes = {'converted': 0, 'refused': 0}
    t0 = time.time()
    for it in range(a.iterations):
        data = mutant(rng, pool)
        with open(src, 'wb') as f:
            f.write(data)
        finding = None
        signal.alarm(20)
        try:
            convert.convert(src, dst)
            outcomes['converted'] += 1
        except convert.ConvertError:
            outcomes['refused'] += 1
        except Hang:
            finding = 'no result after 20 s'
        except BaseException as e:  # noqa: BLE001
            finding = f'{type(e).__name__}: {e}'[:300] + '\n' + traceback.format_exc()[-1500:]
        finally:
            signal.alarm(0)
        if os.path.exists(marker):
            finding = 'a pickle global was executed (marker file written)'
        extra = set(os.listdir(out)) - {'input.pt', 'out.gguf'} - {n for n in os.listdir(out) if n.startswith('finding-')}
        if extra:
            finding = f'files left in the output folder: {sorted(extra)}'
        if finding:
            path = os.path.join(out, f'finding-{it}.pt')
            with open(path, 'wb') as f:
                f.write(data)
            print(f'FINDING at iteration {it}: {finding}\ninput saved to {path}')
            return 1
    dt = time.time() - t0
    shutil.rmtree(tc.TMP, ignore_errors=True)
    if a.out is None:
        shutil.rmtree(out, ignore_errors=True)
    print(f'fuzz_convert: {a.iterations} inputs in {dt:.1f} s ({a.iterations / max(dt, 1e-9):.0f}/s), '
          f'{outcomes["converted"]} converted, {outcomes["refused"]} refused with ConvertError, 0 findings (seed {a.seed})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
