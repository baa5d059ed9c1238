#!/usr/bin/python3
"""Tests of weights_tools/convert.py on synthetic checkpoints.

Needs only numpy: the torch zip checkpoints are written by hand (archive/data.pkl pickled with
protocol 2 by a pickler that emits torch-style GLOBAL and persistent-id records, archive/data/<key>
raw little-endian storages, archive/version), so neither torch nor the upstream code is imported.
convert.py runs as a subprocess with /usr/bin/python3, exactly as users run it.

Exit status 0 when every test passes, 1 otherwise; the last line is 'N passed, M failed'.
"""
import collections
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import traceback
import types
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERT = os.environ.get('GYOLO_CONVERT') or os.path.join(os.path.dirname(HERE), 'weights_tools', 'convert.py')
PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
TMP = tempfile.mkdtemp(prefix='gyolo_test_convert_')

# ---------------------------------------------------------------------------------------------
# Writing torch-format checkpoints without torch
# ---------------------------------------------------------------------------------------------


def fake_class(module, name):
    """A class that pickles as the global module.name (instances pickle via NEWOBJ + BUILD)."""
    cls = type(name, (), {})
    cls._pkl_global = (module, name)
    return cls


def fake_func(module, name):
    def f(*args, **kwargs):
        raise RuntimeError('fake global called')
    f._pkl_global = (module, name)
    return f


HalfStorage = fake_class('torch', 'HalfStorage')
FloatStorage = fake_class('torch', 'FloatStorage')
DoubleStorage = fake_class('torch', 'DoubleStorage')
LongStorage = fake_class('torch', 'LongStorage')
STORAGE_CLASSES = {np.dtype('<f2'): HalfStorage, np.dtype('<f4'): FloatStorage, np.dtype('<f8'): DoubleStorage,
                   np.dtype('<i8'): LongStorage}
REBUILD_TENSOR_V2 = fake_func('torch._utils', '_rebuild_tensor_v2')
REBUILD_PARAMETER = fake_func('torch._utils', '_rebuild_parameter')

Sequential = fake_class('torch.nn.modules.container', 'Sequential')
ModuleList = fake_class('torch.nn.modules.container', 'ModuleList')
Conv2d = fake_class('torch.nn.modules.conv', 'Conv2d')
BatchNorm2d = fake_class('torch.nn.modules.batchnorm', 'BatchNorm2d')
SiLU = fake_class('torch.nn.modules.activation', 'SiLU')
Linear = fake_class('torch.nn.modules.linear', 'Linear')
Conv = fake_class('models.common', 'Conv')
Silence = fake_class('models.common', 'Silence')
DualDPanoptic = fake_class('models.yolo', 'DualDPanoptic')
Grit = fake_class('models.grit', 'Grit')
SegmentationModel = fake_class('models.yolo', 'SegmentationModel')


class Storage:
    """A torch storage: pickled as a persistent id, its bytes go to archive/data/<key>."""

    def __init__(self, key, flat):
        self.key = str(key)
        self.flat = np.ascontiguousarray(flat).reshape(-1)
        self.cls = STORAGE_CLASSES[self.flat.dtype]


class Tensor:
    """Pickles like torch.Tensor: _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce_ex__(self, proto):
        return (REBUILD_TENSOR_V2, (self.storage, self.offset, self.size, self.stride, False,
                                    collections.OrderedDict()))

    def value(self):
        """The logical (contiguous) array this tensor denotes."""
        item = self.storage.flat.dtype.itemsize
        a = np.lib.stride_tricks.as_strided(self.storage.flat[self.offset:], shape=self.size,
                                            strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(a)


class Parameter:
    """Pickles like torch.nn.Parameter: _rebuild_parameter(tensor, requires_grad, hooks)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (REBUILD_PARAMETER, (self.tensor, True, collections.OrderedDict()))

    def value(self):
        return self.tensor.value()


class Reduce:
    """An object that pickles as REDUCE(func, args): used to plant hostile calls."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce_ex__(self, proto):
        return (self.func, self.args)


class CkptPickler(pickle._Pickler):  # the pure-Python pickler lets us override save_global
    def __init__(self, f):
        super().__init__(f, protocol=2)
        self.storages = collections.OrderedDict()

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj
            return ('storage', obj.cls, obj.key, 'cpu', obj.flat.size)
        return None

    def _save_fake_global(self, obj):
        g = obj.__dict__.get('_pkl_global')
        if g is None:
            return False
        self.write(pickle.GLOBAL + f'{g[0]}\n{g[1]}\n'.encode('utf-8'))
        self.memoize(obj)
        return True

    def save_type(self, obj):
        if not self._save_fake_global(obj):
            pickle._Pickler.save_type(self, obj)

    def save_function(self, obj):
        if not self._save_fake_global(obj):
            pickle._Pickler.save_global(self, obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_type
    dispatch[types.FunctionType] = save_function


def pickle_ckpt(obj):
    """Returns (data.pkl bytes, OrderedDict key -> Storage)."""
    buf = io.BytesIO()
    p = CkptPickler(buf)
    p.dump(obj)
    return buf.getvalue(), p.storages


def write_zip(path, entries, prefix='archive/', deflate=()):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zf.writestr(prefix + name, data, zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)


def write_ckpt(path, obj, prefix='archive/', byteorder=None, storage_edit=None, deflate=()):
    """Torch zip layout: data.pkl, [byteorder], data/<key>..., version."""
    pkl, storages = pickle_ckpt(obj)
    entries = [('data.pkl', pkl)]
    if byteorder is not None:
        entries.append(('byteorder', byteorder))
    for key, st in storages.items():
        raw = st.flat.astype(st.flat.dtype.newbyteorder('<')).tobytes()
        if storage_edit:
            raw = storage_edit(key, raw)
        if raw is not None:
            entries.append((f'data/{key}', raw))
    entries.append(('version', b'3\n'))
    write_zip(path, entries, prefix, deflate)
    return path


# ---------------------------------------------------------------------------------------------
# Synthetic model
# ---------------------------------------------------------------------------------------------

def module(cls, params=(), buffers=(), modules=(), nonpersistent=(), **attrs):
    m = cls()
    m.__dict__.update({
        'training': False,
        '_parameters': collections.OrderedDict(params),
        '_buffers': collections.OrderedDict(buffers),
        '_non_persistent_buffers_set': set(nonpersistent),
        '_backward_hooks': collections.OrderedDict(),
        '_forward_hooks': collections.OrderedDict(),
        '_forward_pre_hooks': collections.OrderedDict(),
        '_state_dict_hooks': collections.OrderedDict(),
        '_load_state_dict_pre_hooks': collections.OrderedDict(),
        '_modules': collections.OrderedDict(modules),
    })
    m.__dict__.update(attrs)
    return m


class ModelBuilder:
    """Builds a small upstream-shaped module tree and remembers the state_dict it implies."""

    def __init__(self, seed, dtype='<f2'):
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.n = 0

    def storage(self, numel, dtype=None):
        dtype = np.dtype(dtype or self.dtype)
        if dtype == np.dtype('<f2'):  # every fp16 bit pattern, NaN payloads and subnormals included
            flat = self.rng.integers(0, 1 << 16, numel, dtype=np.uint16).view('<f2')
        elif dtype == np.dtype('<f4'):
            flat = self.rng.integers(0, 1 << 32, numel, dtype=np.uint32).view('<f4')
        elif dtype == np.dtype('<i8'):
            flat = self.rng.integers(0, 1000, numel).astype('<i8')
        else:
            flat = self.rng.standard_normal(numel).astype(dtype)
        self.n += 1
        return Storage(self.n - 1, flat)

    def tensor(self, *shape, dtype=None):
        numel = int(np.prod(shape)) if shape else 1
        stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return Tensor(self.storage(numel, dtype), 0, shape, stride)

    def param(self, *shape, dtype=None):
        return Parameter(self.tensor(*shape, dtype=dtype))

    def conv(self, c1, c2, k=1, extra_buffers=(), nonpersistent=()):
        return module(Conv, modules=[
            ('conv', module(Conv2d, params=[('weight', self.param(c2, c1, k, k)), ('bias', None)],
                            in_channels=c1, out_channels=c2)),
            ('bn', module(BatchNorm2d, params=[('weight', self.param(c2)), ('bias', self.param(c2))],
                          buffers=[('running_mean', self.tensor(c2)), ('running_var', self.tensor(c2)),
                                   ('num_batches_tracked', self.tensor(dtype='<i8'))], eps=1e-3)),
            ('act', module(SiLU)),
        ], buffers=list(extra_buffers), nonpersistent=nonpersistent)


YAML = {'nc': 2, 'depth_multiple': 1.0, 'width_multiple': 1.0, 'anchors': 3,
        'backbone': [[-1, 1, 'Silence', []], [-1, 1, 'Conv', [8, 3, 2]], [-1, 1, 'Conv', [16, 3, 2]]],
        'head': [[[1, 2], 1, 'DualDPanoptic', ['nc', 93, 32, None]], [-1, 1, 'nn.Upsample', [None, 2, 'nearest']]],
        'ch': 3}
GRIT_CONFIG = {'d_model': 16, 'n_heads': 2, 'vocab_size': 5, 'pad_idx': 0, 'bos_idx': 2, 'eos_idx': 3}


def walk(mod, prefix):
    """(state_dict name, tensor) pairs of a synthetic module, in nn.Module.state_dict() order."""
    d = mod.__dict__
    for k, t in d['_parameters'].items():
        if t is not None:
            yield prefix + k, t
    for k, t in d['_buffers'].items():
        if t is not None and k not in d['_non_persistent_buffers_set']:
            yield prefix + k, t
    for k, c in d['_modules'].items():
        yield from walk(c, prefix + k + '.')


def make_model(seed=1, names=None, with_double_aux=False):
    """Returns (model stub, expected OrderedDict name -> array of the kept tensors)."""
    b = ModelBuilder(seed)
    # A tensor that is a strided view into a larger shared storage (transposed 3x4 -> 4x3).
    shared = b.storage(20)
    view = Tensor(shared, 5, (4, 3), (1, 4))
    layers = collections.OrderedDict()
    layers['0'] = module(Silence)
    layers['1'] = b.conv(3, 8, 3, extra_buffers=[('scratch', b.tensor(8))], nonpersistent={'scratch'})
    layers['2'] = b.conv(8, 16, 3)
    layers['2']._modules['conv']._parameters['bias'] = Parameter(view)  # exercises view rebuild
    aux = b.conv(16, 8, 1)  # layer 30: auxiliary branch, dropped
    if with_double_aux:
        aux._modules['conv']._parameters['weight'] = Parameter(b.tensor(8, 16, 1, 1, dtype='<f8'))
    layers['30'] = aux
    head = module(DualDPanoptic, modules=[
        ('cv2', module(ModuleList, modules=[('0', b.conv(16, 4, 1))])),   # dropped
        ('cv4', module(ModuleList, modules=[('0', b.conv(16, 4, 1))])),   # kept
        ('dfl', module(Conv2d, params=[('weight', b.param(1, 16, 1, 1))])),   # dropped
        ('dfl3', module(Conv2d, params=[('weight', b.param(1, 16, 1, 1))])),  # kept
    ], buffers=[('anchors', b.tensor(2, 3)), ('strides', None)], nc=2)
    layers['55'] = head
    grit = module(Grit, params=[('fc_alpha2', b.param(4, 4, dtype='<f4'))],
                  buffers=[('running_seq', b.tensor(1, dtype='<i8')), ('running_keys', b.tensor(2, 2)),
                           ('pos_emb', b.tensor(5, 16, dtype='<f4'))],
                  modules=[('word_emb', module(Linear, params=[('weight', b.param(5, 16, dtype='<f4'))]))],
                  config=dict(GRIT_CONFIG))
    layers['56'] = grit
    seq = module(Sequential, modules=list(layers.items()))
    stride = Tensor(Storage('stride', np.array([8, 16, 32], dtype='<f4')), 0, (3,), (1,))
    m = module(SegmentationModel, modules=[('model', seq)], yaml=json.loads(json.dumps(YAML)),
               names=names if names is not None else {1: 'dog', 0: 'cat'}, nc=2, stride=stride,
               save=[1, 2], inplace=True)
    expected = collections.OrderedDict()
    dropped = []
    for k, t in walk(m, ''):
        keep = (not k.endswith('num_batches_tracked') and not k.startswith('model.30.')
                and not k.startswith(('model.55.cv2.', 'model.55.dfl.', 'model.55.anchors'))
                and k not in ('model.56.running_seq', 'model.56.running_keys'))
        if keep:
            expected[k] = t.value()
        else:
            dropped.append(k)
    return m, expected, dropped


def make_ckpt(model=None, ema=None):
    return {'epoch': -1, 'best_fitness': None, 'model': model, 'ema': ema, 'updates': None,
            'optimizer': None, 'opt': {'imgsz': 640}, 'git': None, 'date': '2024-06-01T00:00:00'}


# ---------------------------------------------------------------------------------------------
# Independent GGUF reader
# ---------------------------------------------------------------------------------------------

def read_gguf(path):
    """Returns (kv: name -> (type, value), [(name, torch_shape, ggml_type, offset, raw bytes)], alignment)."""
    buf = open(path, 'rb').read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    def rstr():
        nonlocal pos
        (n,) = take('<Q')
        assert pos + n <= len(buf)
        s = buf[pos:pos + n].decode('utf-8')
        pos += n
        return s

    fmts = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = take('<IQ')
            return (et, [rval(et) for _ in range(n)])
        return take(fmts[t])[0]

    assert buf[:4] == b'GGUF', 'bad magic'
    pos = 4
    version, nt, nkv = take('<IQQ')
    assert version == 3, version
    kv = collections.OrderedDict()
    for _ in range(nkv):
        k = rstr()
        (t,) = take('<I')
        assert k not in kv, f'duplicate key {k}'
        kv[k] = (t, rval(t))
    align = kv['general.alignment'][1] if 'general.alignment' in kv else 32
    infos = []
    for _ in range(nt):
        name = rstr()
        (nd,) = take('<I')
        dims = take(f'<{nd}Q')
        gtype, off = take('<IQ')
        infos.append((name, tuple(reversed(dims)), gtype, off))
    data_start = (pos + align - 1) // align * align
    assert all(b == 0 for b in buf[pos:data_start]), 'non-zero header padding'
    out = []
    for name, shape, gtype, off in infos:
        size = {0: 4, 1: 2}[gtype] * int(np.prod(shape))
        assert off % align == 0, f'{name}: misaligned'
        assert data_start + off + size <= len(buf), f'{name}: out of bounds'
        out.append((name, shape, gtype, off, buf[data_start + off:data_start + off + size]))
    return kv, out, align


# ---------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def path(name):
    return os.path.join(TMP, name)


def run_convert(ckpt, out, *extra):
    return subprocess.run([PYTHON, CONVERT, '--checkpoint', ckpt, '--out', out, *extra],
                          capture_output=True, text=True, timeout=120)


def check_ok(r, out):
    assert r.returncode == 0, f'convert failed ({r.returncode}): {r.stderr.strip()}'
    assert os.path.exists(out), 'no output file'
    assert not os.path.exists(out + '.tmp'), '.tmp left behind'


def check_refused(r, out, *needles):
    """Non-zero exit, exactly one stderr line 'convert.py: error: ...' containing every needle,
    and neither the output nor its .tmp exists."""
    err = r.stderr
    assert r.returncode != 0, f'expected failure, got exit 0; stderr: {err!r}'
    lines = err.strip('\n').split('\n')
    assert len(lines) == 1, f'expected one stderr line, got {len(lines)}: {err!r}'
    assert lines[0].startswith('convert.py: error: '), f'unexpected message: {err!r}'
    for n in needles:
        assert n in lines[0], f'{n!r} not in message: {lines[0]!r}'
    assert 'Traceback' not in err
    assert not os.path.exists(out), 'output written despite the error'
    assert not os.path.exists(out + '.tmp'), '.tmp left behind'
    return lines[0]


def check_tensors(out, expected):
    kv, tensors, align = read_gguf(out)
    assert align == 32
    names = [t[0] for t in tensors]
    assert names == list(expected), f'tensor names/order differ:\n got {names}\n exp {list(expected)}'
    for name, shape, gtype, off, raw in tensors:
        exp = expected[name]
        assert shape == exp.shape, f'{name}: shape {shape} != {exp.shape}'
        assert gtype == {np.dtype('<f2'): 1, np.dtype('<f4'): 0}[exp.dtype], f'{name}: ggml type {gtype}'
        assert raw == exp.tobytes(), f'{name}: bytes differ'
    return kv


# ---------------------------------------------------------------------------------------------
# (a) conversion of a small synthetic model
# ---------------------------------------------------------------------------------------------

@test
def test_small_model_bit_exact():
    m, expected, dropped = make_model(seed=1)
    ckpt = write_ckpt(path('small.pt'), make_ckpt(model=m, ema=None), byteorder=b'little')
    out = path('small.gguf')
    r = run_convert(ckpt, out)
    check_ok(r, out)
    assert f'{len(expected)} tensors' in r.stderr, r.stderr
    kv = check_tensors(out, expected)
    # Some of what must be gone, explicitly.
    for gone in ('model.1.bn.num_batches_tracked', 'model.30.conv.weight', 'model.55.cv2.0.conv.weight',
                 'model.55.dfl.weight', 'model.56.running_seq', 'model.56.running_keys', 'model.55.anchors'):
        assert gone in dropped, gone  # (sanity of the synthetic model)
    names = [t[0] for t in read_gguf(out)[1]]
    for gone in dropped + ['model.1.scratch']:  # scratch: a non-persistent buffer
        assert gone not in names, f'{gone} should have been dropped'
    for kept in ('model.55.cv4.0.conv.weight', 'model.55.dfl3.weight', 'model.56.fc_alpha2',
                 'model.56.pos_emb', 'model.56.word_emb.weight', 'model.2.conv.bias'):
        assert kept in names, kept
    sha = hashlib.sha256(open(ckpt, 'rb').read()).hexdigest()
    want = collections.OrderedDict([
        ('general.architecture', (8, 'gyolo')),
        ('general.name', (8, 'small')),
        ('general.alignment', (4, 32)),
        ('gyolo.format_version', (4, 1)),
        ('gyolo.converter_version', (8, '0.1.0')),
        ('gyolo.source_sha256', (8, sha)),
        ('gyolo.source_key', (8, 'model')),
        ('gyolo.nc', (4, 2)),
        ('gyolo.names', (9, (8, ['cat', 'dog']))),
        ('gyolo.stride', (9, (6, [8.0, 16.0, 32.0]))),
    ])
    for k, v in want.items():
        assert kv.get(k) == v, f'{k}: {kv.get(k)!r} != {v!r}'
    assert kv['gyolo.yaml'][0] == 8 and json.loads(kv['gyolo.yaml'][1]) == YAML
    assert kv['gyolo.grit_config'][0] == 8 and json.loads(kv['gyolo.grit_config'][1]) == GRIT_CONFIG
    assert 'gyolo.vocab' not in kv


@test
def test_training_keeps_aux_and_whole_head():
    m, expected, dropped = make_model(seed=1)
    ckpt = write_ckpt(path('small_train.pt'), make_ckpt(model=m, ema=None))
    out, out_inf = path('small_train.gguf'), path('small_inf.gguf')
    r = run_convert(ckpt, out, '--training')
    check_ok(r, out)
    # expected: every state_dict tensor except num_batches_tracked and Grit's running_* beam buffers
    train_exp = collections.OrderedDict()
    for k, t in walk(m, ''):
        if not k.endswith('num_batches_tracked') and k not in ('model.56.running_seq', 'model.56.running_keys'):
            train_exp[k] = t.value()
    for k in ('model.30.conv.weight', 'model.55.cv2.0.conv.weight', 'model.55.dfl.weight'):
        assert k in train_exp, k  # (sanity: dropped by default, kept with --training)
    assert f'{len(train_exp)} tensors' in r.stderr, r.stderr
    kv = check_tensors(out, train_exp)
    # everything apart from the tensors is what the default conversion writes
    check_ok(run_convert(ckpt, out_inf), out_inf)
    kv_inf = check_tensors(out_inf, expected)
    kv.pop('gyolo.crc32'), kv_inf.pop('gyolo.crc32')  # the files' checksums differ, of course
    assert kv == kv_inf, 'metadata differs between --training and the default'


@test
def test_fp32_checkpoint_list_names_and_vocab():
    b = ModelBuilder(7, dtype='<f4')
    m = module(SegmentationModel, modules=[('model', module(Sequential, modules=[('1', b.conv(3, 4, 1))]))],
               yaml={'nc': 3}, names=['a', 'b', 'c'], stride=[8.0, 16.0, 32.0])
    expected = collections.OrderedDict(
        (k, v) for k, v in [('model.1.conv.weight', None), ('model.1.bn.weight', None), ('model.1.bn.bias', None),
                            ('model.1.bn.running_mean', None), ('model.1.bn.running_var', None)])
    conv, bn = m._modules['model']._modules['1']._modules['conv'], m._modules['model']._modules['1']._modules['bn']
    expected['model.1.conv.weight'] = conv._parameters['weight'].value()
    expected['model.1.bn.weight'] = bn._parameters['weight'].value()
    expected['model.1.bn.bias'] = bn._parameters['bias'].value()
    expected['model.1.bn.running_mean'] = bn._buffers['running_mean'].value()
    expected['model.1.bn.running_var'] = bn._buffers['running_var'].value()
    ckpt = write_ckpt(path('fp32.pt'), make_ckpt(model=m))
    vocab = path('vocab.txt')
    with open(vocab, 'wb') as f:
        f.write('[PAD]\n\nzebra\nçà'.encode('utf-8'))
    out = path('fp32.gguf')
    r = run_convert(ckpt, out, '--vocab', vocab)
    check_ok(r, out)
    kv = check_tensors(out, expected)
    assert kv['gyolo.nc'] == (4, 3), kv['gyolo.nc']  # from yaml: the model has no nc attribute
    assert kv['gyolo.names'] == (9, (8, ['a', 'b', 'c']))
    assert kv['gyolo.vocab'] == (9, (8, ['[PAD]', '', 'zebra', 'çà'])), kv['gyolo.vocab']
    assert 'gyolo.grit_config' not in kv


@test
def test_other_zip_prefix_and_shared_storage():
    # torch names the folder after the file stem; a storage may back several tensors.
    b = ModelBuilder(3)
    st = b.storage(4 * 3 * 1 * 1 + 4)
    w = Tensor(st, 0, (4, 3, 1, 1), (3, 1, 1, 1))
    g = Tensor(st, 12, (4,), (1,))
    conv = module(Conv, modules=[('conv', module(Conv2d, params=[('weight', Parameter(w))])),
                                 ('bn', module(BatchNorm2d, params=[('weight', Parameter(g))]))])
    m = module(SegmentationModel, modules=[('model', module(Sequential, modules=[('1', conv)]))],
               yaml={'nc': 1}, names={0: 'x'}, nc=1, stride=[32.0])
    ckpt = write_ckpt(path('prefix.pt'), make_ckpt(model=m), prefix='my_model/')
    out = path('prefix.gguf')
    check_ok(run_convert(ckpt, out), out)
    check_tensors(out, collections.OrderedDict([('model.1.conv.weight', w.value()), ('model.1.bn.weight', g.value())]))


# ---------------------------------------------------------------------------------------------
# (b) 'ema' preferred over 'model'
# ---------------------------------------------------------------------------------------------

@test
def test_ema_preferred_over_model():
    m_model, exp_model, _ = make_model(seed=10)
    m_ema, exp_ema, _ = make_model(seed=20)
    ckpt = write_ckpt(path('both.pt'), make_ckpt(model=m_model, ema=m_ema))
    out = path('both.gguf')
    check_ok(run_convert(ckpt, out), out)
    kv = check_tensors(out, exp_ema)
    assert kv['gyolo.source_key'] == (8, 'ema')
    # and with ema None, 'model' is used
    ckpt2 = write_ckpt(path('model_only.pt'), make_ckpt(model=m_model, ema=None))
    out2 = path('model_only.gguf')
    check_ok(run_convert(ckpt2, out2), out2)
    kv2 = check_tensors(out2, exp_model)
    assert kv2['gyolo.source_key'] == (8, 'model')


@test
def test_no_ema_no_model():
    ckpt = write_ckpt(path('empty_ckpt.pt'), make_ckpt())
    out = path('empty_ckpt.gguf')
    check_refused(run_convert(ckpt, out), out, "neither 'ema' nor 'model'")


@test
def test_kept_fp64_refused_dropped_fp64_ignored():
    m, expected, _ = make_model(seed=5, with_double_aux=True)  # fp64 in dropped layer 30: fine
    ckpt = write_ckpt(path('aux64.pt'), make_ckpt(model=m))
    out = path('aux64.gguf')
    check_ok(run_convert(ckpt, out), out)
    check_tensors(out, expected)
    m2, _, _ = make_model(seed=5)
    m2._modules['model']._modules['2']._modules['bn']._parameters['weight'] = Parameter(
        Tensor(Storage('d', np.zeros(16, '<f8')), 0, (16,), (1,)))
    ckpt2 = write_ckpt(path('kept64.pt'), make_ckpt(model=m2))
    out2 = path('kept64.gguf')
    check_refused(run_convert(ckpt2, out2), out2, 'model.2.bn.weight', 'DoubleStorage')


# ---------------------------------------------------------------------------------------------
# (c) hostile pickles
# ---------------------------------------------------------------------------------------------

MARKER = path('pwned')


def hostile_zip(name, pkl):
    p = path(name + '.pt')
    write_zip(p, [('data.pkl', pkl), ('version', b'3\n')])
    return p


def check_hostile(name, pkl, global_name):
    ckpt = hostile_zip(name, pkl)
    out = path(name + '.gguf')
    line = check_refused(run_convert(ckpt, out), out, global_name)
    assert not os.path.exists(MARKER), 'the hostile payload ran!'
    return line


CMD = f'touch {MARKER}'.encode()


@test
def test_hostile_os_system_protocol0():
    check_hostile('os_system', b'cos\nsystem\n(S\'' + CMD + b'\'\ntR.', "'os.system'")


@test
def test_hostile_posix_system_protocol2():
    pkl = b'\x80\x02cposix\nsystem\nq\x00X' + struct.pack('<I', len(CMD)) + CMD + b'\x85q\x01Rq\x02.'
    check_hostile('posix_system', pkl, "'posix.system'")


@test
def test_hostile_builtins_eval():
    src = f'__import__("os").system("touch {MARKER}")'.encode()
    check_hostile('eval', b'cbuiltins\neval\n(S\'' + src + b'\'\ntR.', "'builtins.eval'")
    check_hostile('eval2', b'c__builtin__\neval\n(S\'' + src + b'\'\ntR.', "'__builtin__.eval'")
    check_hostile('exec', b'c__builtin__\nexec\n(S\'' + src + b'\'\ntR.', "'__builtin__.exec'")


@test
def test_hostile_subprocess_popen_stack_global():
    # protocol 4 STACK_GLOBAL: the names come from the stack, not the opcode argument
    def u(s):
        b = s.encode()
        return b'\x8c' + bytes([len(b)]) + b

    pkl = (b'\x80\x04' + u('subprocess') + u('Popen') + b'\x93' + b'(' + u('touch') + u(MARKER) + b'l\x85R.')
    check_hostile('popen', pkl, "'subprocess.Popen'")


@test
def test_hostile_allowed_looking_callables():
    # Globals that look like the torch/numpy ones a checkpoint uses but are not on the allow-list.
    for mod, name in [('torch.storage', '_load_from_bytes'), ('torch', 'load'),
                      ('torch._utils', '_rebuild_device_tensor_from_numpy'), ('torch._utils', '_rebuild_qtensor'),
                      ('collections', 'defaultdict'), ('numpy', 'load'), ('numpy.core.multiarray', 'frombuffer'),
                      ('builtins', '__import__'), ('builtins', 'setattr'), ('copyreg', '_reconstructor'),
                      ('torch.nn', 'Module'), ('models', 'common')]:
        pkl = b'\x80\x02c' + mod.encode() + b'\n' + name.encode() + b'\nX\x01\x00\x00\x00x\x85R.'
        check_hostile(f'allowed_looking_{mod}_{name}', pkl, f"'{mod}.{name}'")


@test
def test_hostile_global_deep_inside_valid_checkpoint():
    m, _, _ = make_model(seed=2)
    m.yaml['backbone'].append(Reduce(fake_func('os', 'system'), (f'touch {MARKER}',)))
    ckpt = write_ckpt(path('deep.pt'), make_ckpt(model=m))
    out = path('deep.gguf')
    check_refused(run_convert(ckpt, out), out, "'os.system'")
    assert not os.path.exists(MARKER)


@test
def test_hostile_getattr_chain_is_inert():
    # builtins.getattr is allowed (upstream pickles use it) but yields an inert placeholder: the classic
    # getattr(<allowed class>, '__init__').__globals__ ... chain cannot reach anything callable.
    pkl = (b'\x80\x02c__builtin__\ngetattr\nq\x00cmodels.common\nConv\nX\x08\x00\x00\x00__init__\x86R'
           b'X' + struct.pack('<I', len(CMD)) + CMD + b'\x85R.')
    ckpt = hostile_zip('getattr_chain', pkl)
    out = path('getattr_chain.gguf')
    check_refused(run_convert(ckpt, out), out, 'cannot unpickle')
    assert not os.path.exists(MARKER)


@test
def test_stub_module_names_must_be_identifiers():
    pkl = b'\x80\x02cmodels.common\nConv.__init__.__globals__\nX\x01\x00\x00\x00x\x85R.'
    ckpt = hostile_zip('dotted_stub', pkl)
    out = path('dotted_stub.gguf')
    check_refused(run_convert(ckpt, out), out, 'models.common.Conv.__init__.__globals__')


# ---------------------------------------------------------------------------------------------
# (d) malformed inputs
# ---------------------------------------------------------------------------------------------

@test
def test_non_zip_input():
    p = path('not_a_zip.pt')
    with open(p, 'wb') as f:
        f.write(b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.' + bytes(100))  # legacy torch magic number
    out = path('not_a_zip.gguf')
    check_refused(run_convert(p, out), out, 'not a torch zip checkpoint')
    p2 = path('text.pt')
    with open(p2, 'w') as f:
        f.write('hello\n')
    check_refused(run_convert(p2, out), out, 'not a torch zip checkpoint')


@test
def test_missing_file():
    out = path('missing.gguf')
    check_refused(run_convert(path('does_not_exist.pt'), out), out, 'does_not_exist.pt')


@test
def test_directory_as_checkpoint():
    out = path('dir.gguf')
    check_refused(run_convert(TMP, out), out)


@test
def test_zip_without_data_pkl():
    p = path('no_pkl.pt')
    write_zip(p, [('data/0', b'\0' * 8), ('version', b'3\n')])
    out = path('no_pkl.gguf')
    check_refused(run_convert(p, out), out, 'data.pkl')


@test
def test_zip_with_two_data_pkl():
    m, _, _ = make_model(seed=3)
    pkl, _ = pickle_ckpt(make_ckpt(model=m))
    p = path('two_pkl.pt')
    with zipfile.ZipFile(p, 'w') as zf:
        zf.writestr('a/data.pkl', pkl)
        zf.writestr('b/data.pkl', pkl)
    out = path('two_pkl.gguf')
    check_refused(run_convert(p, out), out, 'data.pkl', 'found 2')


def convert_module():
    """convert.py imported, for the tests of convert.convert() called as a library function."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('gyolo_convert', CONVERT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def expect_convert_error(ckpt, *needles):
    cv = convert_module()
    try:
        cv.convert(ckpt, ckpt + '.gguf')
    except cv.ConvertError as e:
        for n in needles:
            assert n in str(e), f'{n!r} not in {e}'
    else:
        raise AssertionError('converted')
    assert not os.path.exists(ckpt + '.gguf')


@test
def test_fuzz_finding_bad_crc_is_convert_error():
    """tests/fuzz/fuzz_convert.py found: a zip whose data.pkl fails its CRC raised zipfile.BadZipFile
    out of convert.convert() (the CLI only printed it through its catch-all)."""
    m, _, _ = make_model(seed=3)
    p = write_ckpt(path('bad_crc.pt'), make_ckpt(model=m))
    raw = bytearray(open(p, 'rb').read())
    i = raw.index(b'archive/data.pkl') + len('archive/data.pkl') + 10  # inside the stored pickle
    raw[i] ^= 0xFF
    open(p, 'wb').write(bytes(raw))
    expect_convert_error(p, 'corrupt zip archive', 'BadZipFile')
    check_refused(run_convert(p, path('bad_crc.gguf')), path('bad_crc.gguf'), 'corrupt zip archive')


@test
def test_fuzz_finding_foreign_structure_is_convert_error():
    """tests/fuzz/fuzz_convert.py found: a module whose _modules has a non-string key (a mutated
    pickle) raised TypeError out of convert.convert()."""
    m, _, _ = make_model(seed=3)
    seq = m.__dict__['_modules']['model']
    seq.__dict__['_modules'][('1', 'x')] = seq.__dict__['_modules'].pop('1')
    p = write_ckpt(path('tuple_key.pt'), make_ckpt(model=m))
    expect_convert_error(p, 'not a GYOLO model', 'TypeError')


@test
def test_truncated_storage():
    m, _, _ = make_model(seed=4)
    ckpt = write_ckpt(path('short_storage.pt'), make_ckpt(model=m),
                      storage_edit=lambda k, raw: raw[:-2] if k == '3' else raw)
    out = path('short_storage.gguf')
    check_refused(run_convert(ckpt, out), out, 'archive/data/3', 'elements, expected')


@test
def test_storage_not_multiple_of_itemsize():
    m, _, _ = make_model(seed=4)
    ckpt = write_ckpt(path('odd_storage.pt'), make_ckpt(model=m),
                      storage_edit=lambda k, raw: raw[:-1] if k == '3' else raw)
    out = path('odd_storage.gguf')
    check_refused(run_convert(ckpt, out), out, 'archive/data/3', 'not a multiple of 2')


@test
def test_missing_storage_entry():
    m, _, _ = make_model(seed=4)
    ckpt = write_ckpt(path('no_storage.pt'), make_ckpt(model=m),
                      storage_edit=lambda k, raw: None if k == '5' else raw)
    out = path('no_storage.gguf')
    check_refused(run_convert(ckpt, out), out, 'lacks storage entry archive/data/5')


@test
def test_view_beyond_storage():
    m, _, _ = make_model(seed=4)
    w = m._modules['model']._modules['1']._modules['bn']._parameters['weight']
    w.tensor.offset = 1  # 8 elements from offset 1 of an 8-element storage
    ckpt = write_ckpt(path('view_oob.pt'), make_ckpt(model=m))
    out = path('view_oob.gguf')
    check_refused(run_convert(ckpt, out), out, 'exceeds its storage')


@test
def test_hostile_tensor_geometry_refused():
    # A negative stride makes numpy's as_strided read memory before the storage buffer (a crash for
    # a large one, a silent out-of-bounds read for a small one); the other cases must not allocate
    # absurd amounts or escape as tracebacks.
    cases = {
        'neg_stride_huge': lambda t: setattr(t, 'stride', (-(1 << 40),)),
        'neg_stride_small': lambda t: setattr(t, 'stride', (-1,)),
        'neg_size': lambda t: setattr(t, 'size', (-8,)),
        'neg_offset': lambda t: setattr(t, 'offset', -4),
        'rank_mismatch': lambda t: (setattr(t, 'size', (2, 4)), setattr(t, 'stride', (4,))),
        'absurd_numel_stride0': lambda t: (setattr(t, 'size', (1 << 62,)), setattr(t, 'stride', (0,))),
    }
    problems = []
    for name, edit in cases.items():
        m, _, _ = make_model(seed=4)
        edit(m._modules['model']._modules['1']._modules['bn']._parameters['weight'].tensor)
        ckpt = write_ckpt(path(name + '.pt'), make_ckpt(model=m))
        out = path(name + '.gguf')
        r = run_convert(ckpt, out)
        try:
            check_refused(r, out)
        except AssertionError as e:
            problems.append(f'{name}: exit {r.returncode}: {e}')
        if os.path.exists(out):
            os.unlink(out)
    assert not problems, '; '.join(problems)


def check_refused_small(r, out, rss_limit_kb, *needles):
    """check_refused, and the converter's peak memory (its child's max RSS) stayed under the limit."""
    check_refused(r, out, *needles)
    import resource
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak < rss_limit_kb, f'the converter peaked at {peak} KB before refusing (limit {rss_limit_kb} KB)'


@test
def test_stride0_expansion_refused():
    # 1 KB of checkpoint declaring a 2^30-element fp16 tensor through a stride-0 view: the element
    # cap alone let it through (2 GB materialised); a view may not hold more elements than its storage
    m, _, _ = make_model(seed=4)
    t = m._modules['model']._modules['1']._modules['bn']._parameters['weight'].tensor
    t.size, t.stride = (1 << 30,), (0,)
    ckpt = write_ckpt(path('stride0.pt'), make_ckpt(model=m))
    out = path('stride0.gguf')
    check_refused_small(run_convert(ckpt, out), out, 1 << 20, 'stride 0', str(1 << 30))


@test
def test_memo_index_beyond_the_pickle_refused():
    # fuzz_convert.py's finding: a 10-byte pickle naming memo index 2^28 made CPython's unpickler
    # allocate and clear a 4 GiB memo table (6 s, 4 GB resident) before failing or succeeding
    for i, idx in enumerate((1 << 28, 1 << 20)):
        pkl = b'\x80\x02N' + b'r' + struct.pack('<I', idx) + b'.'
        ckpt = hostile_zip(f'memo_{i}', pkl)
        out = path(f'memo_{i}.gguf')
        check_refused_small(run_convert(ckpt, out), out, 1 << 20, 'memo index', str(idx))
    # an index within the pickle's length but above its memo writes is refused too
    pkl = b'\x80\x02N' + b'q\x05' + b'.'
    ckpt = hostile_zip('memo_small', pkl)
    check_refused(run_convert(ckpt, path('memo_small.gguf')), path('memo_small.gguf'), 'memo index 5', '1 memo writes')


@test
def test_repeated_views_of_one_storage_refused():
    # one 1M-element storage viewed whole by 200 tensors (extra checkpoint entries are unpickled
    # too): 200M elements materialised from 1M stored
    m, _, _ = make_model(seed=4)
    big = Storage('big', np.zeros(1 << 20, dtype='<f2'))
    ck = make_ckpt(model=m)
    ck['optimizer'] = [Tensor(big, 0, (1 << 20,), (1,)) for _ in range(200)]
    ckpt = write_ckpt(path('repeat.pt'), ck)
    out = path('repeat.gguf')
    check_refused_small(run_convert(ckpt, out), out, 1 << 20, 'materialise', 'stored')


@test
def test_deflate_bomb_refused():
    # a storage entry deflated ~1000x (64 MB of zeros in ~64 KB): refused from the zip header,
    # before anything is decompressed; torch.save never compresses
    m, _, _ = make_model(seed=4)
    ck = make_ckpt(model=m)
    ck['optimizer'] = [Tensor(Storage('bomb', np.zeros(32 << 20, dtype='<f2')), 0, (32 << 20,), (1,))]
    ckpt = write_ckpt(path('bomb.pt'), ck, deflate={'data/bomb'})
    assert os.path.getsize(ckpt) < (1 << 20)
    out = path('bomb.gguf')
    check_refused_small(run_convert(ckpt, out), out, 1 << 20, 'archive/data/bomb', 'expands from')


@test
def test_storage_entry_larger_than_declared_refused():
    m, _, _ = make_model(seed=4)
    ckpt = write_ckpt(path('long_storage.pt'), make_ckpt(model=m),
                      storage_edit=lambda k, raw: raw + bytes(4096) if k == '3' else raw)
    out = path('long_storage.gguf')
    check_refused(run_convert(ckpt, out), out, 'archive/data/3', 'bytes, its')


@test
def test_deflated_checkpoint_of_normal_size_converts():
    # compression by itself is fine: a re-zipped (deflated) checkpoint converts to the same file
    m, _, _ = make_model(seed=4)
    a, b = path('stored.gguf'), path('deflated.gguf')
    check_ok(run_convert(write_ckpt(path('stored.pt'), make_ckpt(model=m)), a), a)
    keys = {f'data/{k}' for k in range(64)} | {'data.pkl'}
    check_ok(run_convert(write_ckpt(path('deflated.pt'), make_ckpt(model=m), deflate=keys), b), b)
    ta, tb = read_gguf(a)[1], read_gguf(b)[1]
    assert len(ta) > 5 and [(t[0], t[1], t[4]) for t in ta] == [(t[0], t[1], t[4]) for t in tb]


@test
def test_content_checksum_written_last_and_verifiable():
    import zlib
    m, expected, _ = make_model(seed=4)
    ckpt = write_ckpt(path('crc.pt'), make_ckpt(model=m))
    out = path('crc.gguf')
    check_ok(run_convert(ckpt, out), out)
    kv, tensors, _ = read_gguf(out)
    assert list(kv)[-1] == 'gyolo.crc32' and kv['gyolo.crc32'][0] == 4, list(kv)[-3:]
    buf = bytearray(open(out, 'rb').read())
    at = buf.find(b'gyolo.crc32') + len('gyolo.crc32') + 4
    stored = struct.unpack_from('<I', buf, at)[0]
    assert stored == kv['gyolo.crc32'][1]
    buf[at:at + 4] = bytes(4)
    assert zlib.crc32(bytes(buf)) == stored


@test
def test_truncated_zip_file():
    m, _, _ = make_model(seed=6)
    full = open(write_ckpt(path('full.pt'), make_ckpt(model=m)), 'rb').read()
    out = path('trunc.gguf')
    for cut in (len(full) // 2, len(full) - 30, 10):
        p = path(f'trunc_{cut}.pt')
        with open(p, 'wb') as f:
            f.write(full[:cut])
        check_refused(run_convert(p, out), out)


@test
def test_corrupt_pickle():
    for i, pkl in enumerate([b'\x80\x02garbage', b'', b'\x80\x02}q\x00(X\x03\x00\x00\x00emaq', b'\x80\x02K\x01.']):
        p = hostile_zip(f'corrupt_{i}', pkl)
        out = path(f'corrupt_{i}.gguf')
        check_refused(run_convert(p, out), out)


@test
def test_big_endian_byteorder_refused():
    m, _, _ = make_model(seed=8)
    ckpt = write_ckpt(path('big.pt'), make_ckpt(model=m), byteorder=b'big')
    out = path('big.gguf')
    check_refused(run_convert(ckpt, out), out, "byte order 'big'")


# ---------------------------------------------------------------------------------------------
# (e) output path problems
# ---------------------------------------------------------------------------------------------

@test
def test_out_in_missing_directory():
    m, _, _ = make_model(seed=9)
    ckpt = write_ckpt(path('ok.pt'), make_ckpt(model=m))
    out = path('no/such/dir/out.gguf')
    check_refused(run_convert(ckpt, out), out, 'no/such/dir/out.gguf')
    assert not os.path.exists(path('no'))


@test
def test_out_is_a_directory():
    m, _, _ = make_model(seed=9)
    ckpt = write_ckpt(path('ok2.pt'), make_ckpt(model=m))
    out = path('a_dir.gguf')
    os.mkdir(out)
    r = run_convert(ckpt, out)
    assert r.returncode != 0 and len(r.stderr.strip().split('\n')) == 1, r.stderr
    assert os.path.isdir(out) and not os.path.exists(out + '.tmp')


@test
def test_conversion_is_deterministic():
    m, _, _ = make_model(seed=11)
    ckpt = write_ckpt(path('det.pt'), make_ckpt(model=m))
    a, b = path('det_a.gguf'), path('det_b.gguf')
    check_ok(run_convert(ckpt, a), a)
    check_ok(run_convert(ckpt, b), b)
    assert open(a, 'rb').read() == open(b, 'rb').read()


def main():
    only = sys.argv[1:]
    passed = failed = 0
    for fn in TESTS:
        if only and not any(o in fn.__name__ for o in only):
            continue
        try:
            if os.path.exists(MARKER):
                os.unlink(MARKER)
            fn()
            passed += 1
            print(f'PASS {fn.__name__}')
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f'FAIL {fn.__name__}: {type(e).__name__}: {e}')
            if os.environ.get('VERBOSE'):
                traceback.print_exc()
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
    print(f'{passed} passed, {failed} failed')
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
