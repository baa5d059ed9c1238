"""Offline stand-ins that make the upstream GeneralistYOLO code importable here.

Used only by make_fixtures.py (never by convert.py).  Nothing from upstream is
copied: the stand-ins are written from scratch.

* ``einops``: a faithful ``rearrange`` / ``repeat`` for the axis-pattern subset
  upstream uses (groups in parentheses, unit axes ``1`` / ``()``, new axes in
  ``repeat`` sized by keyword).
* ``transformers``: a ``BertTokenizer`` that reads a local vocab file
  (``GYOLO_VOCAB`` env var, default /work/shared/data/vocab.txt) and answers
  special-token ids offline, e.g. [CLS] = 2 for upstream's vocab.
* Import-time-only packages that are missing (pandas, matplotlib, seaborn,
  IPython, torchvision, tqdm, scipy, pycocotools, pycocoevalcap, nltk, thop,
  ...) get an inert module whose attributes are callable no-op dummies.

``install()`` writes einops.py / transformers.py into a temp dir, prepends it to
sys.path, and registers a meta-path finder for the inert stubs (only for
packages that are not really installed).
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import types

_EINOPS_SRC = r'''
"""Minimal einops stand-in (rearrange / repeat) for GeneralistYOLO's patterns."""
import math


def _parse_side(side):
    groups, cur, in_group = [], None, False
    for tok in side.replace('(', ' ( ').replace(')', ' ) ').split():
        if tok == '(':
            assert not in_group, side
            cur, in_group = [], True
        elif tok == ')':
            assert in_group, side
            groups.append(cur)
            cur, in_group = None, False
        else:
            name = None if tok == '1' else tok
            if in_group:
                if name is not None:
                    cur.append(name)
            else:
                groups.append([] if name is None else [name])
    assert not in_group, side
    return groups


def _apply(tensor, pattern, sizes, allow_new):
    left, right = pattern.split('->')
    lg, rg = _parse_side(left), _parse_side(right)
    shape = list(tensor.shape)
    if len(lg) != len(shape):
        raise ValueError(f'einops stand-in: pattern {pattern!r} does not match shape {shape}')
    known = dict(sizes)
    for g, n in zip(lg, shape):
        unknown = [a for a in g if a not in known]
        prod = 1
        for a in g:
            if a in known:
                prod *= known[a]
        if len(unknown) > 1:
            raise ValueError(f'einops stand-in: cannot infer {unknown} in {pattern!r}')
        if unknown:
            assert n % prod == 0
            known[unknown[0]] = n // prod
        elif prod != n:
            raise ValueError(f'einops stand-in: size mismatch in {pattern!r} for shape {shape}')
    left_axes = [a for g in lg for a in g]
    x = tensor.reshape([known[a] for a in left_axes]) if left_axes else tensor.reshape([])
    right_axes = [a for g in rg for a in g]
    new_axes = [a for a in right_axes if a not in left_axes]
    if new_axes and not allow_new:
        raise ValueError(f'einops stand-in: rearrange cannot introduce axes {new_axes}')
    dropped = [a for a in left_axes if a not in right_axes]
    if dropped:
        raise ValueError(f'einops stand-in: reduction not supported ({dropped})')
    perm = [left_axes.index(a) for a in right_axes if a in left_axes]
    x = x.permute(*perm) if perm else x
    # insert new axes (expand), in right-side order
    cur = [a for a in right_axes if a in left_axes]
    for i, a in enumerate(right_axes):
        if a not in left_axes:
            if a not in known:
                raise ValueError(f'einops stand-in: size of new axis {a!r} not given')
            x = x.unsqueeze(i)
            cur.insert(i, a)
    if new_axes:
        x = x.expand(*[known[a] for a in right_axes])
    out_shape = [math.prod(known[a] for a in g) for g in rg]
    return x.reshape(out_shape)


def rearrange(tensor, pattern, **sizes):
    return _apply(tensor, pattern, sizes, allow_new=False)


def repeat(tensor, pattern, **sizes):
    return _apply(tensor, pattern, sizes, allow_new=True)
'''

_TRANSFORMERS_SRC = r'''
"""Minimal offline transformers stand-in: BertTokenizer over a local vocab file."""
import os

_DEFAULT_VOCAB = os.environ.get('GYOLO_VOCAB', '/work/shared/data/vocab.txt')


class BertTokenizer:
    def __init__(self, vocab_file=None, do_lower_case=True, unk_token='[UNK]', sep_token='[SEP]',
                 pad_token='[PAD]', cls_token='[CLS]', mask_token='[MASK]', **kwargs):
        path = vocab_file or _DEFAULT_VOCAB
        with open(path, 'r', encoding='utf-8') as f:
            lines = f.read().split('\n')
        self.vocab = {}
        for i, tok in enumerate(lines):
            self.vocab[tok.rstrip('\n')] = i  # like HF load_vocab: last index wins
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self._unk_token, self._sep_token, self._pad_token = unk_token, sep_token, pad_token
        self._cls_token, self._mask_token = cls_token, mask_token

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls(None)

    def convert_tokens_to_ids(self, tok):
        if isinstance(tok, (list, tuple)):
            return [self.convert_tokens_to_ids(t) for t in tok]
        return self.vocab.get(tok, self.vocab.get(self._unk_token))

    def decode(self, ids, skip_special_tokens=True):
        special = {self._unk_token, self._sep_token, self._pad_token, self._cls_token, self._mask_token}
        toks = []
        for i in ids:
            t = self.ids_to_tokens.get(int(i), self._unk_token)
            if skip_special_tokens and t in special:
                continue
            toks.append(t)
        s = ' '.join(toks).replace(' ##', '').strip()
        for a, b in ((' .', '.'), (' ?', '?'), (' !', '!'), (' ,', ','), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            s = s.replace(a, b)
        return s

    def batch_decode(self, seqs, skip_special_tokens=True):
        return [self.decode(s, skip_special_tokens) for s in seqs]


class PreTrainedTokenizer(BertTokenizer):
    pass


class AutoTokenizer(BertTokenizer):
    pass
'''

INERT = ('pandas', 'matplotlib', 'seaborn', 'IPython', 'torchvision', 'tqdm', 'scipy', 'pycocotools',
         'pycocoevalcap', 'nltk', 'thop', 'albumentations', 'clearml', 'comet_ml', 'wandb',
         'tensorboard', 'pkg_resources', 'ultralytics', 'prettytable')


class _Dummy:
    """Inert object: every attribute, call, item and iteration is harmless."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        # decorator use: @dummy(fn) returns fn
        if len(a) == 1 and not k and callable(a[0]) and not isinstance(a[0], _Dummy):
            return a[0]
        return _Dummy()

    def __getattr__(self, name):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)
        return _Dummy()

    def __getitem__(self, k):
        return _Dummy()

    def __setitem__(self, k, v):
        pass

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def __mro_entries__(self, bases):
        return (object,)

    def __str__(self):
        return '0.0.0'

    __version__ = '0.0.0'


class _InertModule(types.ModuleType):
    __version__ = '0.0.0'

    def __getattr__(self, name):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)
        return _Dummy()


class _InertLoader(importlib.abc.Loader):
    def create_module(self, spec):
        m = _InertModule(spec.name)
        m.__path__ = []  # behave as a package so submodules import
        return m

    def exec_module(self, module):
        pass


class _InertFinder(importlib.abc.MetaPathFinder):
    def __init__(self, tops):
        self.tops = set(tops)

    def find_spec(self, fullname, path, target=None):
        if fullname.split('.')[0] in self.tops:
            return importlib.machinery.ModuleSpec(fullname, _InertLoader(), is_package=True)
        return None


_installed_dir = None


def install(vocab_path=None):
    """Install the stand-ins; returns the temp dir put on sys.path."""
    global _installed_dir
    if vocab_path:
        os.environ['GYOLO_VOCAB'] = str(vocab_path)
    if _installed_dir is not None:
        return _installed_dir
    d = tempfile.mkdtemp(prefix='gyolo_stubs_')
    for name, src in (('einops', _EINOPS_SRC), ('transformers', _TRANSFORMERS_SRC)):
        if importlib.util.find_spec(name) is None or name == 'transformers':
            # transformers: always the offline stand-in (the real one would try the hub)
            with open(os.path.join(d, name + '.py'), 'w') as f:
                f.write(src)
    sys.path.insert(0, d)
    missing = [t for t in INERT if importlib.util.find_spec(t) is None]
    sys.meta_path.append(_InertFinder(missing))
    _installed_dir = d
    return d
