#!/usr/bin/python3
"""Convert an official GeneralistYOLO checkpoint (torch zip .pt) to gyolo GGUF.

Usage:
    /usr/bin/python3 weights_tools/convert.py --checkpoint gyolo.pt --out gyolo.gguf [--vocab vocab.txt] [--training]

--training keeps every tensor of the vision model and Grit (auxiliary branch 24-42 / 47-50 and all of
head 55 included); only num_batches_tracked and Grit's running_* beam buffers are still dropped.

Pure Python + numpy: neither torch nor the upstream code is imported.  The
pickle is read with a restricted unpickler that maps every allowed global to an
inert stand-in and refuses anything else.  See docs/weights-format.md.

Writes exactly --out (via --out.tmp + rename); on any error nothing is written
and a single line goes to stderr, exit status 1.  The last metadata key, gyolo.crc32, is the
CRC-32 of the whole file with its own four value bytes as zero; gyolo verifies it at load.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import struct
import sys
import zipfile
import zlib

import numpy as np

CONVERTER_VERSION = '0.1.0'
FORMAT_VERSION = 1
ALIGNMENT = 32
MAX_TENSOR_ELEMENTS = 1 << 31  # far above any GeneralistYOLO tensor; bounds memory use
MAX_PICKLE_BYTES = 256 << 20   # data.pkl (a few MB for GYOLO-X); read whole, so bounded first
MAX_EXPANSION = 64             # a compressed zip entry may expand at most this much (torch stores them raw)
SHARED_VIEW_FACTOR = 2         # tensors may materialise at most 2x the elements their storages hold (tied weights)


class _LoadBudget:
    """What one checkpoint's tensors may materialise: every allocation is bounded by what the file
    actually holds (stored elements), so a small file cannot demand gigabytes through repeated or
    stride-0 views of one storage."""
    stored = 0        # elements of the storages read so far
    materialised = 0  # elements of the tensors rebuilt so far


_budget = _LoadBudget()


class ConvertError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------

class Stub:
    """Inert stand-in for a pickled class instance (nn.Module etc.): keeps BUILD state."""
    _gyolo_qualname = 'Stub'

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._stub_args = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            if isinstance(slots, dict):
                self.__dict__.update(slots)
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif state is not None:
            self.__dict__['_stub_state'] = state

    def __repr__(self):
        return f'<stub {self._gyolo_qualname}>'


class Placeholder:
    """Inert result of an allowed-but-irrelevant callable (getattr, numpy scalars, paths...)."""

    def __init__(self, what, *args, **kwargs):
        self.what = what
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f'<placeholder {self.what}>'


def _placeholder_factory(what):
    def make(*args, **kwargs):
        return Placeholder(what, *args)
    return make


class PlaceholderClass(Placeholder):
    """Class-like placeholder: usable as NEWOBJ target (cls.__new__(cls, *args))."""


def _placeholder_class(what):
    return type(what.replace('.', '_'), (Placeholder,), {
        '__new__': lambda cls, *a, **k: object.__new__(cls),
        '__init__': lambda self, *a, **k: Placeholder.__init__(self, what, *a),
    })


class StorageType:
    """Marker for torch.<X>Storage globals: carries the numpy dtype."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f'<storage type {self.name}>'


_STORAGE_DTYPES = {
    'HalfStorage': np.dtype('<f2'),
    'FloatStorage': np.dtype('<f4'),
    'DoubleStorage': np.dtype('<f8'),
    'BFloat16Storage': np.dtype('<u2'),  # raw bits; never kept
    'LongStorage': np.dtype('<i8'),
    'IntStorage': np.dtype('<i4'),
    'ShortStorage': np.dtype('<i2'),
    'CharStorage': np.dtype('i1'),
    'ByteStorage': np.dtype('u1'),
    'BoolStorage': np.dtype('?'),
    'ComplexFloatStorage': np.dtype('<c8'),
    'ComplexDoubleStorage': np.dtype('<c16'),
}

_TORCH_DTYPE_NAMES = {'float16', 'half', 'float32', 'float', 'float64', 'double', 'bfloat16', 'int64',
                      'long', 'int32', 'int', 'int16', 'short', 'int8', 'uint8', 'bool'}


class Tensor:
    """A rebuilt tensor: contiguous numpy array + torch dtype name."""
    __slots__ = ('array', 'torch_dtype')

    def __init__(self, array, torch_dtype):
        self.array = array
        self.torch_dtype = torch_dtype


class Storage:
    __slots__ = ('data', 'stype')

    def __init__(self, data, stype):
        self.data = data
        self.stype = stype


def _rebuild_tensor(storage, storage_offset, size, stride):
    if not isinstance(storage, Storage):
        raise ConvertError(f'unexpected tensor storage object {storage!r}')
    try:
        storage_offset = int(storage_offset)
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise ConvertError(f'malformed tensor geometry: offset {storage_offset!r}, size {size!r}, stride {stride!r}')
    # torch tensors never have negative sizes/strides; a negative stride would make as_strided
    # read memory outside the storage buffer.
    if (len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in size)
            or any(st < 0 for st in stride)):
        raise ConvertError(f'invalid tensor geometry: offset {storage_offset}, size {size}, stride {stride}')
    buf = storage.data
    n = 1
    for s in size:
        n *= s
    if n > MAX_TENSOR_ELEMENTS:
        raise ConvertError(f'tensor of size {size} has {n} elements (limit {MAX_TENSOR_ELEMENTS})')
    if n > buf.size:
        raise ConvertError(f'tensor of size {size} and stride {stride} has {n} elements but its storage holds '
                           f'{buf.size}: views that repeat elements (stride 0, overlapping) are not supported')
    if _budget.materialised + n > SHARED_VIEW_FACTOR * _budget.stored + (1 << 20):
        raise ConvertError(f'the checkpoint\'s tensors would materialise over {_budget.materialised + n} elements from '
                           f'{_budget.stored} stored ones (one storage viewed over and over)')
    _budget.materialised += n
    if n == 0:
        arr = np.zeros(size, dtype=buf.dtype)
    else:
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if storage_offset < 0 or last >= buf.size:
            raise ConvertError('tensor view exceeds its storage')
        item = buf.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(buf[storage_offset:], shape=size,
                                              strides=tuple(st * item for st in stride))
        arr = np.ascontiguousarray(arr)
    return Tensor(arr, storage.stype.name)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


_STUB_CLASSES = {}


def _stub_class(module, name):
    key = f'{module}.{name}'
    cls = _STUB_CLASSES.get(key)
    if cls is None:
        cls = type(name, (Stub,), {'_gyolo_qualname': key})
        _STUB_CLASSES[key] = cls
    return cls


_STUB_MODULE_PREFIXES = ('models.common', 'models.grit', 'models.yolo', 'models.experimental',
                         'torch.nn.modules.')
_STUB_EXACT = {'torchvision.ops.misc.FrozenBatchNorm2d'}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, zf, prefix):
        super().__init__(file)
        self._zf = zf
        self._prefix = prefix
        self._storages = {}

    def find_class(self, module, name):
        full = f'{module}.{name}'
        if module in ('builtins', '__builtin__'):
            if name == 'getattr':
                return _placeholder_factory('getattr')
            if name == 'set':
                return set
            if name == 'frozenset':
                return frozenset
        elif module == 'collections' and name == 'OrderedDict':
            return collections.OrderedDict
        elif module == 'torch._utils':
            if name == '_rebuild_tensor_v2':
                return _rebuild_tensor_v2
            if name == '_rebuild_tensor':
                return _rebuild_tensor
            if name == '_rebuild_parameter':
                return _rebuild_parameter
            if name == '_rebuild_parameter_with_state':
                return _rebuild_parameter_with_state
        elif module == 'torch._tensor' and name == '_rebuild_from_type_v2':
            return _rebuild_from_type_v2
        elif module == 'torch' and name in ('Tensor', 'nn.Parameter'):
            return _placeholder_class(full)
        elif module == 'torch' and name == 'Size':
            return tuple
        elif module == 'torch' and name in _STORAGE_DTYPES:
            return StorageType(name, _STORAGE_DTYPES[name])
        elif module == 'torch' and name in _TORCH_DTYPE_NAMES:
            return f'torch.{name}'
        elif module == 'torch' and name == 'device':
            return _placeholder_factory(full)
        elif module in ('numpy', 'numpy.core.multiarray', 'numpy._core.multiarray') and name in (
                'scalar', 'dtype', '_reconstruct', 'ndarray'):
            return _placeholder_class(full) if name in ('dtype', 'ndarray') else _placeholder_factory(full)
        elif module == 'pathlib' and name in ('PosixPath', 'WindowsPath', 'Path', 'PurePosixPath',
                                              'PureWindowsPath'):
            return lambda *parts: '/'.join(str(p) for p in parts)
        if full in _STUB_EXACT or any(module == p or module.startswith(p) for p in _STUB_MODULE_PREFIXES):
            if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
                raise ConvertError(f'refusing pickle global {full}')
            return _stub_class(module, name)
        raise ConvertError(f'refusing to load forbidden pickle global {full!r} (not in the allow-list)')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise ConvertError(f'unsupported persistent id {pid!r}')
        stype, key, numel = pid[1], str(pid[2]), pid[4]  # pid[3] = location, ignored
        if not isinstance(stype, StorageType):
            raise ConvertError(f'unsupported storage type {stype!r}')
        if key in self._storages:
            return self._storages[key]
        entry = f'{self._prefix}data/{key}'
        try:
            info = self._zf.getinfo(entry)
        except KeyError:
            raise ConvertError(f'checkpoint zip lacks storage entry {entry}')
        item = stype.dtype.itemsize
        if not isinstance(numel, int) or numel < 0 or numel > MAX_TENSOR_ELEMENTS:
            raise ConvertError(f'storage {entry} declares {numel!r} elements (limit {MAX_TENSOR_ELEMENTS})')
        if info.file_size > numel * item:
            raise ConvertError(f'storage {entry} has {info.file_size} bytes, its {numel} {stype.name} elements take {numel * item}')
        _check_expansion(info)
        raw = self._zf.read(entry)
        if len(raw) % item:
            raise ConvertError(f'storage {entry} has {len(raw)} bytes, not a multiple of {item}')
        data = np.frombuffer(raw, dtype=stype.dtype)
        if data.size < int(numel):
            raise ConvertError(f'storage {entry} holds {data.size} elements, expected {numel}')
        st = Storage(data, stype)
        self._storages[key] = st
        _budget.stored += data.size
        return st


def _check_expansion(info):
    """Refuses a zip entry that would decompress to far more than it occupies in the file (torch.save
    stores entries uncompressed; a deflate bomb expands ~1000x), before anything is decompressed."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_EXPANSION * max(info.compress_size, 1) + (1 << 20):
        raise ConvertError(f'zip entry {info.filename} expands from {info.compress_size} to {info.file_size} bytes '
                           f'(more than {MAX_EXPANSION}x; torch.save stores entries uncompressed)')


def _check_memo_indices(pkl, where):
    """Refuses a pickle whose memo indices exceed what it can hold, before unpickling. CPython's
    unpickler sizes its memo table by the largest index a PUT names and clears it: a 10-byte pickle
    naming index 2**28 makes it allocate and write 4 GiB (found by tests/fuzz/fuzz_convert.py).
    pickle numbers its memo entries 0, 1, 2, ... (torch.save included), so every index must be
    below the number of memo-writing opcodes. A pickle that pickletools cannot walk is refused too."""
    writes, largest = 0, -1
    try:
        for op, arg, _ in pickletools.genops(pkl):
            if op.name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
                writes += 1
                largest = max(largest, arg)
            elif op.name == 'MEMOIZE':
                writes += 1
    except ConvertError:
        raise
    except Exception as e:  # noqa: BLE001  (ValueError for unknown opcodes, truncated arguments ...)
        raise ConvertError(f'{where}: malformed pickle: {type(e).__name__}: {e}')
    if largest >= writes:
        raise ConvertError(f'{where}: pickle memo index {largest} but only {writes} memo writes '
                           '(pickle numbers its memo entries from 0)')


def load_checkpoint(path):
    """Return the unpickled top-level object of a torch zip checkpoint (stand-ins only)."""
    if not zipfile.is_zipfile(path):
        raise ConvertError(f'{path}: not a torch zip checkpoint (legacy/tar torch formats are not supported)')
    try:
        return _load_zip(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, NotImplementedError, ValueError, OSError,
            struct.error) as e:
        # a damaged archive (bad CRC, truncated entry, unknown compression): one clear error
        raise ConvertError(f'{path}: corrupt zip archive: {type(e).__name__}: {e}')


def _load_zip(path):
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith('data.pkl') and n.count('/') == 1]
        if len(pkls) != 1:
            raise ConvertError(f'{path}: expected exactly one <name>/data.pkl in the zip, found {len(pkls)}')
        prefix = pkls[0][:-len('data.pkl')]
        if prefix + 'byteorder' in zf.namelist():
            order = zf.read(prefix + 'byteorder').decode().strip()
            if order != 'little':
                raise ConvertError(f'{path}: unsupported storage byte order {order!r}')
        info = zf.getinfo(pkls[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise ConvertError(f'{path}: {pkls[0]} is {info.file_size} bytes (limit {MAX_PICKLE_BYTES})')
        _check_expansion(info)
        pkl = zf.read(pkls[0])
        _check_memo_indices(pkl, f'{path}: {pkls[0]}')
        up = RestrictedUnpickler(io.BytesIO(pkl), zf, prefix)
        _budget.stored = _budget.materialised = 0
        try:
            return up.load()
        except ConvertError:
            raise
        except Exception as e:  # malformed pickle etc.
            raise ConvertError(f'{path}: cannot unpickle: {type(e).__name__}: {e}')


# --------------------------------------------------------------------------------------------
# state_dict reconstruction and selection
# --------------------------------------------------------------------------------------------

def module_state_dict(mod, prefix=''):
    """Reproduce nn.Module.state_dict() order and keys on stand-in objects."""
    out = collections.OrderedDict()
    d = getattr(mod, '__dict__', {})
    nonpersist = d.get('_non_persistent_buffers_set') or set()
    for name, t in (d.get('_parameters') or {}).items():
        if t is not None:
            out[prefix + name] = t
    for name, t in (d.get('_buffers') or {}).items():
        if t is not None and name not in nonpersist:
            out[prefix + name] = t
    for name, child in (d.get('_modules') or {}).items():
        if child is not None:
            out.update(module_state_dict(child, prefix + name + '.'))
    return out


_KEEP_LAYERS = set(range(0, 24)) | set(range(43, 47)) | set(range(51, 55))
_KEEP_HEAD55 = {'cv4', 'cv5', 'cv6', 'cv7', 'cv9', 'proto2', 'uconv2', 'dfl2', 'dfl3'}
_DROP_GRIT_BUFFERS = {'running_mask_x', 'running_seq', 'running_keys', 'running_values'}


def keep_key(key, training=False):
    """Inference selection (default) or, with training=True, every model.<idx>.* tensor."""
    parts = key.split('.')
    if parts[-1] == 'num_batches_tracked':
        return False
    if len(parts) < 3 or parts[0] != 'model' or not parts[1].isdigit():
        return False
    idx = int(parts[1])
    if training:
        return idx != 56 or parts[-1] not in _DROP_GRIT_BUFFERS
    if idx in _KEEP_LAYERS:
        return True
    if idx == 55:
        return parts[2] in _KEEP_HEAD55
    if idx == 56:
        return parts[-1] not in _DROP_GRIT_BUFFERS
    return False


def _tensor_list(obj, what):
    if isinstance(obj, Tensor):
        return [float(v) for v in obj.array.astype(np.float64).reshape(-1)]
    if isinstance(obj, (list, tuple)):
        return [float(v) for v in obj]
    raise ConvertError(f'model attribute {what} has unexpected type {type(obj).__name__}')


def _json_safe(obj, what):
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConvertError(f'model attribute {what} is not JSON-serialisable: {e}')


def extract(ckpt):
    """Return (source_key, model stub) from a checkpoint dict."""
    if not isinstance(ckpt, dict):
        raise ConvertError(f'checkpoint top level is {type(ckpt).__name__}, expected dict')
    if ckpt.get('ema') is not None:
        key = 'ema'
    elif ckpt.get('model') is not None:
        key = 'model'
    else:
        raise ConvertError("checkpoint has neither 'ema' nor 'model'")
    model = ckpt[key]
    if not isinstance(model, Stub):
        raise ConvertError(f"checkpoint['{key}'] is {type(model).__name__}, not a pickled module")
    return key, model


def collect(model, training=False):
    """Return (selected OrderedDict name -> Tensor, metadata dict)."""
    d = model.__dict__
    sd = module_state_dict(model)
    if not sd:
        raise ConvertError('model has no parameters/buffers')
    sel = collections.OrderedDict()
    for k, t in sd.items():
        if not keep_key(k, training):
            continue
        if not isinstance(t, Tensor):
            raise ConvertError(f'{k}: not a tensor ({type(t).__name__})')
        if t.torch_dtype not in ('HalfStorage', 'FloatStorage'):
            raise ConvertError(f'{k}: unsupported dtype {t.torch_dtype} (only fp16/fp32 are kept)')
        sel[k] = t
    if not any(k.startswith('model.1.') for k in sel):
        raise ConvertError('no model.1.* tensors found: not a GeneralistYOLO checkpoint?')

    yaml_d = d.get('yaml')
    if not isinstance(yaml_d, dict):
        raise ConvertError('model has no yaml dict attribute')
    yaml_json = _json_safe(yaml_d, 'yaml')
    names = d.get('names')
    if isinstance(names, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in names.items())
        except (TypeError, ValueError):
            raise ConvertError('model.names dict has non-integer keys')
        if [i for i, _ in items] != list(range(len(items))):
            raise ConvertError('model.names indices are not 0..n-1')
        names = [v for _, v in items]
    elif isinstance(names, (list, tuple)):
        names = [str(v) for v in names]
    else:
        raise ConvertError('model has no names attribute')
    nc = d.get('nc', yaml_d.get('nc'))
    if not isinstance(nc, int):
        nc = yaml_d.get('nc')
    if not isinstance(nc, int) or nc <= 0:
        raise ConvertError(f'bad nc {nc!r}')
    if 'stride' not in d:
        raise ConvertError('model has no stride attribute')
    stride = _tensor_list(d['stride'], 'stride')
    meta = {'yaml': yaml_json, 'nc': nc, 'names': names, 'stride': stride}
    # Grit's hard-coded config dict (d_model, n_heads, vocab_size, ...), when present.
    seq = (d.get('_modules') or {}).get('model')
    if seq is not None:
        grit = (seq.__dict__.get('_modules') or {}).get('56')
        if grit is not None and isinstance(grit.__dict__.get('config'), dict):
            meta['grit_config'] = _json_safe(grit.__dict__['config'], 'model.56.config')
    return sel, meta


# --------------------------------------------------------------------------------------------
# GGUF v3 writer
# --------------------------------------------------------------------------------------------

GGUF_UINT32, GGUF_FLOAT32, GGUF_STRING, GGUF_ARRAY = 4, 6, 8, 9
GGML_F32, GGML_F16 = 0, 1


def _str(s):
    b = s.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def _kv(key, vtype, value):
    out = _str(key) + struct.pack('<I', vtype)
    if vtype == GGUF_UINT32:
        out += struct.pack('<I', value)
    elif vtype == GGUF_STRING:
        out += _str(value)
    elif vtype == GGUF_ARRAY:
        etype, items = value
        out += struct.pack('<IQ', etype, len(items))
        if etype == GGUF_STRING:
            out += b''.join(_str(s) for s in items)
        elif etype == GGUF_FLOAT32:
            out += struct.pack(f'<{len(items)}f', *items)
        else:
            raise ConvertError('internal: unsupported array type')
    else:
        raise ConvertError('internal: unsupported kv type')
    return out


def _pad(n):
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


def build_gguf(kvs, tensors):
    """kvs: list of (key, type, value); tensors: OrderedDict name -> np.ndarray (f2/f4)."""
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs))
    head += b''.join(_kv(k, t, v) for k, t, v in kvs)
    infos, offset, blobs = [], 0, []
    for name, arr in tensors.items():
        if arr.dtype == np.dtype('<f2'):
            gtype = GGML_F16
        elif arr.dtype == np.dtype('<f4'):
            gtype = GGML_F32
        else:
            raise ConvertError(f'{name}: internal dtype error')
        dims = list(reversed(arr.shape)) or [1]
        info = _str(name) + struct.pack('<I', len(dims)) + struct.pack(f'<{len(dims)}Q', *dims)
        info += struct.pack('<IQ', gtype, offset)
        infos.append(info)
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes(order='C')
        blobs.append(data + b'\0' * _pad(len(data)))
        offset += len(blobs[-1])
    head += b''.join(infos)
    head += b'\0' * _pad(len(head))
    return head, blobs


def with_crc32(head, blobs):
    """head with gyolo.crc32's value (the last metadata key, zero so far) set to the CRC-32 of
    head + blobs."""
    key = _str('gyolo.crc32') + struct.pack('<I', GGUF_UINT32)
    at = head.rfind(key)
    if at < 0 or head[at + len(key):at + len(key) + 4] != bytes(4):
        raise ConvertError('internal error: gyolo.crc32 not found in the header')
    at += len(key)
    crc = zlib.crc32(head)
    for b in blobs:
        crc = zlib.crc32(b, crc)
    return head[:at] + struct.pack('<I', crc) + head[at + 4:]


def convert(ckpt_path, out_path, vocab_path=None, training=False):
    with open(ckpt_path, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    vocab = None
    if vocab_path:
        with open(vocab_path, 'rb') as f:
            raw = f.read()
        try:
            vocab = raw.decode('utf-8').split('\n')
        except UnicodeDecodeError as e:
            raise ConvertError(f'{vocab_path}: not UTF-8: {e}')
    ckpt = load_checkpoint(ckpt_path)
    try:
        source_key, model = extract(ckpt)
        sel, meta = collect(model, training)
    except ConvertError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError, RecursionError) as e:
        # the unpickled objects come from the file: a structure that is not a model's is refused, not a crash
        raise ConvertError(f'{ckpt_path}: the checkpoint\'s objects are not a GYOLO model\'s: {type(e).__name__}: {str(e)[:200]}')
    stem = os.path.splitext(os.path.basename(ckpt_path))[0]
    kvs = [
        ('general.architecture', GGUF_STRING, 'gyolo'),
        ('general.name', GGUF_STRING, stem),
        ('general.alignment', GGUF_UINT32, ALIGNMENT),
        ('gyolo.format_version', GGUF_UINT32, FORMAT_VERSION),
        ('gyolo.converter_version', GGUF_STRING, CONVERTER_VERSION),
        ('gyolo.source_sha256', GGUF_STRING, sha),
        ('gyolo.source_key', GGUF_STRING, source_key),
        ('gyolo.yaml', GGUF_STRING, meta['yaml']),
        ('gyolo.nc', GGUF_UINT32, meta['nc']),
        ('gyolo.names', GGUF_ARRAY, (GGUF_STRING, meta['names'])),
        ('gyolo.stride', GGUF_ARRAY, (GGUF_FLOAT32, meta['stride'])),
    ]
    if 'grit_config' in meta:
        kvs.append(('gyolo.grit_config', GGUF_STRING, meta['grit_config']))
    if vocab is not None:
        kvs.append(('gyolo.vocab', GGUF_ARRAY, (GGUF_STRING, vocab)))
    kvs.append(('gyolo.crc32', GGUF_UINT32, 0))  # filled in below
    head, blobs = build_gguf(kvs, collections.OrderedDict((k, t.array) for k, t in sel.items()))
    head = with_crc32(head, blobs)
    tmp = out_path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(head)
            for b in blobs:
                f.write(b)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(sel)


# --------------------------------------------------------------------------------------------
# GGUF reader (for verification / tests)
# --------------------------------------------------------------------------------------------

def read_gguf(path):
    """Parse a GGUF v3 file; returns (kv dict, OrderedDict name -> np.ndarray in PyTorch dim order)."""
    with open(path, 'rb') as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return vals

    def rstr():
        nonlocal pos
        (n,) = take('<Q')
        s = buf[pos:pos + n].decode('utf-8')
        pos += n
        return s

    scalar_fmt = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q',
                  12: '<d'}

    def rval(t):
        if t == GGUF_STRING:
            return rstr()
        if t == GGUF_ARRAY:
            et, n = take('<IQ')
            return [rval(et) for _ in range(n)]
        return take(scalar_fmt[t])[0]

    if buf[:4] != b'GGUF':
        raise ConvertError('bad magic')
    pos = 4
    version, nt, nkv = take('<IQQ')
    if version != 3:
        raise ConvertError(f'unsupported GGUF version {version}')
    kv = collections.OrderedDict()
    for _ in range(nkv):
        k = rstr()
        (t,) = take('<I')
        kv[k] = rval(t)
    align = kv.get('general.alignment', 32)
    infos = []
    for _ in range(nt):
        name = rstr()
        (nd,) = take('<I')
        dims = take(f'<{nd}Q')
        gtype, off = take('<IQ')
        infos.append((name, dims, gtype, off))
    data_start = pos + (align - pos % align) % align
    tensors = collections.OrderedDict()
    for name, dims, gtype, off in infos:
        dt = {GGML_F32: np.dtype('<f4'), GGML_F16: np.dtype('<f2')}[gtype]
        n = int(np.prod(dims))
        if off % align:
            raise ConvertError(f'{name}: misaligned offset')
        a = np.frombuffer(buf, dtype=dt, count=n, offset=data_start + off)
        tensors[name] = a.reshape(tuple(reversed(dims)))
    return kv, tensors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--checkpoint', required=True, help='upstream .pt checkpoint (torch zip format)')
    ap.add_argument('--out', required=True, help='output .gguf path')
    ap.add_argument('--vocab', help='caption vocab.txt to embed as gyolo.vocab')
    ap.add_argument('--training', action='store_true',
                    help='keep every vision/Grit tensor (auxiliary branch and all of head 55 too) for training')
    args = ap.parse_args(argv)
    try:
        n = convert(args.checkpoint, args.out, args.vocab, args.training)
    except ConvertError as e:
        print(f'convert.py: error: {e}', file=sys.stderr)
        return 1
    except Exception as e:  # anything else: still one line, nothing written
        print(f'convert.py: error: {type(e).__name__}: {e}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}: {n} tensors', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
