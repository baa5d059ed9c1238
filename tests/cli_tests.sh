#!/usr/bin/env bash
# CLI behaviour: outputs, errors (one line, non-zero exit) and no partial files on failure.
set -u
BIN="$1"; FIX="$2"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
expect_error() {  # expect_error NAME PATTERN CMD...
  local name="$1" pat="$2"; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
  if [ "$(wc -l <"$T/err")" -lt 1 ]; then bad "$name: no message"; return; fi
  if ! grep -q -- "$pat" "$T/err"; then bad "$name: message '$(cat "$T/err")' lacks '$pat'"; return; fi
  ok
}
W="$FIX/tiny/tiny.gguf"
IMG="$FIX/image/horses.jpg"
expect_error "no args" "usage" "$BIN"
# --help: each command prints its usage on stdout and exits 0
for c in "" bench train val datagen train-step; do
  if "$BIN" $c --help >"$T/out" 2>"$T/err" && grep -q "^usage: gyolo" "$T/out" && [ ! -s "$T/err" ]; then ok; else bad "gyolo $c --help: $(head -2 "$T/out" "$T/err")"; fi
done
expect_error "unknown command" "unknown command" "$BIN" frobnicate
expect_error "unknown flag" "unknown option '--bogus'" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --bogus
expect_error "bad imgsz" "--imgsz must be a multiple of 32" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --imgsz 100
expect_error "non-numeric imgsz" "expects an integer" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --imgsz abc
# a memory limit: --imgsz 8192 fails at once with the reason (it took over 10 GB before the limit existed)
expect_error "memory limit" "above the memory limit of 256 MiB" "$BIN" predict --weights "$FIX/../../models/gyolo-shapes.gguf" --source "$IMG" --out "$T/ml" --imgsz 8192 --memory-limit 256M
expect_error "bad memory limit" "--memory-limit expects a size" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --memory-limit lots
expect_error "memory limit overflow" "--memory-limit is too large" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --memory-limit 999999999999999T
expect_error "memory limit without value" "--memory-limit needs a value" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --memory-limit
expect_error "missing weights" "cannot open weights file" "$BIN" predict --weights "$T/nope.gguf" --source "$IMG" --out "$T/o"
printf 'PK\003\004junk' >"$T/ckpt.pt"
expect_error "torch checkpoint" "convert it first" "$BIN" predict --weights "$T/ckpt.pt" --source "$IMG" --out "$T/o"
head -c 1000 /dev/urandom >"$T/rnd.bin"
expect_error "random bytes" "not a GGUF file" "$BIN" predict --weights "$T/rnd.bin" --source "$IMG" --out "$T/o"
expect_error "missing source" "does not exist" "$BIN" predict --weights random --source "$T/none.jpg" --out "$T/o"
mkdir -p "$T/empty"
expect_error "empty dir" "contains no files" "$BIN" predict --weights random --source "$T/empty" --out "$T/o"
if [ -f "$W" ]; then
  # A tiny-variant file is a valid GGUF but the CLI's compiled variant is GYOLO: clear mismatch error.
  expect_error "variant mismatch" "variant mismatch" "$BIN" predict --weights "$W" --source "$IMG" --out "$T/o2"
  [ -e "$T/o2/horses_raw" ] && bad "variant mismatch left files" || ok
  head -c 5000 "$W" >"$T/trunc.gguf"
  expect_error "truncated gguf" "truncated\|beyond the end" "$BIN" predict --weights "$T/trunc.gguf" --source "$IMG" --out "$T/o3"
fi
# A metadata key corrupted into control bytes: the message shows them escaped, never raw.
if [ -f "$W" ]; then
  /usr/bin/python3 - "$W" "$T/badkey.gguf" <<'PYEOF'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
klen = struct.unpack_from('<Q', b, 24)[0]        # the first key: u64 length, name, u32 value type
b[32:34] = b'\x1b\xff'                             # an escape sequence and a non-ASCII byte in its name
struct.pack_into('<I', b, 32 + klen, 99)          # and an impossible value type
open(sys.argv[2], 'wb').write(b)
PYEOF
  expect_error "corrupt metadata key" 'has unknown value type 99' "$BIN" predict --weights "$T/badkey.gguf" --source "$IMG" --out "$T/o" --imgsz 64
  grep -qF '\x1b\xff' "$T/err" && ! grep -q "$(printf '\033')" "$T/err" && ok || bad "corrupt metadata key: bytes not escaped: $(cat -v "$T/err")"
fi
# A directory with one good and one bad image: the good one is processed, the bad one reported.
mkdir -p "$T/mixed"; cp "$IMG" "$T/mixed/a.jpg"; head -c 300 "$IMG" >"$T/mixed/b.jpg"
"$BIN" predict --weights random --source "$T/mixed" --out "$T/o4" --imgsz 320 --save-raw >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && ok || bad "mixed dir: exit 0"
grep -q "b.jpg" "$T/err" && ok || bad "mixed dir: bad image not reported"
[ "$(grep -c '"image"' "$T/out")" = 1 ] && ok || bad "mixed dir: expected one JSON line"
[ -f "$T/o4/a_raw/pred.npy" ] && ok || bad "mixed dir: good image has no raw output"
[ -e "$T/o4/b_raw" ] && bad "mixed dir: bad image left files" || ok
ls -a "$T/o4" | grep -q tmp && bad "temporary files left" || ok
# ---- flags
expect_error "bad conf" "--conf must be in" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --conf 2
expect_error "non-numeric conf" "--conf expects a number" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --conf abc
expect_error "bad iou" "--iou must be in" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --iou -0.1
expect_error "bad max-det" "--max-det must be in" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --max-det 0
expect_error "bad classes" "--classes expects an integer" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --classes 1,x
expect_error "bad tasks" "unknown task 'bogus'" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --tasks det,bogus
expect_error "bad letterbox" "--letterbox must be" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --letterbox wide
expect_error "square vs letterbox" "conflicts" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --square --letterbox val
expect_error "missing value" "--conf needs a value" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --conf
[ -e "$T/o" ] && bad "flag errors created the output directory" || ok
touch "$T/afile"
expect_error "out is a file" "is not a directory" "$BIN" predict --weights random --source "$IMG" --out "$T/afile" --imgsz 64
# ---- every output of one image (random weights, small input for speed)
"$BIN" predict --weights random --source "$IMG" --out "$T/o5" --imgsz 320 --save-coco "$T/o5/coco.json" \
    --save-raw --conf 0.6 --max-det 50 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "full predict: exit $rc ($(cat "$T/err"))"
for f in horses.json horses.png horses_semantic.png horses_panoptic.png coco.json horses_raw/det.npy \
         horses_raw/masks.npy horses_raw/semantic_argmax.npy horses_raw/pred.npy horses_raw/input.npy; do
  [ -s "$T/o5/$f" ] && ok || bad "full predict: $f missing"
done
[ "$(wc -l <"$T/out")" = 1 ] && ok || bad "full predict: expected one stdout line"
grep -q "RANDOM" "$T/err" && ok || bad "random weights not announced"
for k in '"image"' '"width"' '"height"' '"input_hw"' '"detections"' '"semantic"' '"panoptic"' '"caption"' \
         '"timing_ms"' '"segments_info"' '"category_ids"' '"counts"' '"category_id"' '"label"'; do
  grep -q "$k" "$T/o5/horses.json" && ok || bad "horses.json lacks $k"
done
head -c 8 "$T/o5/horses.png" | od -An -c | grep -q 'P   N   G' && ok || bad "horses.png is not a PNG"
PY=""; for p in /usr/bin/python3 python3; do command -v $p >/dev/null 2>&1 && PY=$p && break; done
if [ -n "$PY" ]; then
  $PY - "$T/o5" "$T/out" <<'PYEOF' && ok || bad "JSON outputs are not as documented"
import json, sys, os
d, out = sys.argv[1], sys.argv[2]
j = json.load(open(os.path.join(d, 'horses.json')))
line = json.loads(open(out).read().strip())
assert line['image'] == j['image'] and line['num_detections'] == len(j['detections'])
assert j['width'] == 773 and j['height'] == 512 and j['input_hw'] == [224, 320], (j['width'], j['height'], j['input_hw'])
for det in j['detections']:
    x1, y1, x2, y2 = det['box']
    assert 0 <= x1 <= 773 and 0 <= x2 <= 773 and 0 <= y1 <= 512 and 0 <= y2 <= 512
    assert det['score'] > 0.6 and 0 <= det['class_id'] < 80 and det['category_id'] >= 1
    assert det['mask']['size'] == [512, 773] and isinstance(det['mask']['counts'], str)
assert len(j['detections']) <= 50
assert j['semantic']['png'] == 'horses_semantic.png' and j['panoptic']['png'] == 'horses_panoptic.png'
for s in j['panoptic']['segments_info']:
    assert set(s) >= {'id', 'category_id', 'area', 'bbox', 'iscrowd'}
coco = json.load(open(os.path.join(d, 'coco.json')))
assert len(coco) == len(j['detections'])
for c in coco:
    assert set(c) == {'image_id', 'category_id', 'bbox', 'score', 'segmentation'} and c['image_id'] == 'horses'
PYEOF
fi
# ---- --tasks det: no semantic / panoptic files; --e2e-topk; --classes
"$BIN" predict --weights random --source "$IMG" --out "$T/o6" --imgsz 320 --tasks det --e2e-topk --max-det 5 \
    --classes 0 2 3 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "tasks det: exit $rc ($(cat "$T/err"))"
[ -e "$T/o6/horses_semantic.png" ] || [ -e "$T/o6/horses_panoptic.png" ] && bad "tasks det wrote semantic/panoptic" || ok
grep -q '"semantic": null' "$T/o6/horses.json" && ok || bad "tasks det: semantic not null"
# ---- a directory of good and bad images: good ones processed, bad ones reported, nothing half-written
mkdir -p "$T/mix2"; cp "$IMG" "$T/mix2/good.jpg"; cp "$FIX/image/bad_crc.png" "$T/mix2/crc.png"
cp "$FIX/image/empty.jpg" "$T/mix2/empty.jpg"; cp "$FIX/image/random.bin" "$T/mix2/noise.jpg"
[ -f "$FIX/image/huge.png" ] && cp "$FIX/image/huge.png" "$T/mix2/huge.png"
"$BIN" predict --weights random --source "$T/mix2" --out "$T/o7" --imgsz 320 --tasks det,sem --batch 2 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && ok || bad "mixed dir 2: exit $rc, expected 1"
[ "$(grep -c '"image"' "$T/out")" = 1 ] && ok || bad "mixed dir 2: expected one JSON line"
for b in crc empty noise huge; do
  [ -f "$T/mix2/$b.png" ] || [ -f "$T/mix2/$b.jpg" ] || continue
  grep -q "$b\." "$T/err" && ok || bad "mixed dir 2: $b not reported"
  ls "$T/o7" | grep -q "^$b" && bad "mixed dir 2: $b left files" || ok
done
[ -f "$T/o7/good.json" ] && [ -f "$T/o7/good_semantic.png" ] && ok || bad "mixed dir 2: good image outputs missing"
ls -a "$T/o7" | grep -q tmp && bad "mixed dir 2: temporary files left" || ok
# ---- info, --version, bench
"$BIN" --version >"$T/out" 2>&1 && grep -q "^gyolo [0-9]*\.[0-9]*\.[0-9]* (kernels " "$T/out" && ok || bad "--version: $(cat "$T/out")"
"$BIN" info >"$T/out" 2>&1 && grep -q "^cpu features: " "$T/out" && grep -q "^kernels: " "$T/out" && ok || bad "info: $(cat "$T/out")"
"$BIN" info --isas >"$T/out" 2>&1 && grep -q "^portable" "$T/out" && ok || bad "info --isas: $(cat "$T/out")"
GYOLO_ISA=avx9 "$BIN" info >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "unknown CPU kernel set 'avx9'" "$T/err" && [ ! -s "$T/out" ] && ok || bad "bad GYOLO_ISA: rc $rc $(cat "$T/err")"
for isa in $("$BIN" info --isas); do
  GYOLO_ISA=$isa "$BIN" info | grep -q "^kernels: $isa" && ok || bad "GYOLO_ISA=$isa not used"
done
expect_error "bench without weights" "--weights is required" "$BIN" bench
expect_error "bench bad tasks" "all or vision" "$BIN" bench --weights random --tasks det
expect_error "bench few runs" "--runs must be in" "$BIN" bench --weights random --runs 1
expect_error "bench bad device" "must be cpu, cuda or cuda:N" "$BIN" bench --weights random --device gpu
expect_error "bench cuda source" "--source is not used with --device cuda" "$BIN" bench --weights random --device cuda:0 --source "$IMG"
expect_error "bench batch pipeline" "--batch needs --tasks vision" "$BIN" bench --weights random --batch 2
# --device cuda where there is no GPU or driver (CI), or in a build without CUDA: a clear error
if ! command -v nvidia-smi >/dev/null 2>&1; then
  expect_error "bench cuda without a GPU" "CUDA" "$BIN" bench --weights random --device cuda:0 --tasks vision --imgsz 64
  expect_error "predict cuda without a GPU" "CUDA" "$BIN" predict --weights random --device cuda --source "$IMG" --out "$T/ocuda" --imgsz 64
fi
expect_error "predict half on cpu" "--half needs --device cuda" "$BIN" predict --weights random --half --source "$IMG" --out "$T/ocuda"
expect_error "bench half on cpu" "--half needs --device cuda" "$BIN" bench --weights random --half
expect_error "predict bad device" "must be cpu, cuda or cuda:N" "$BIN" predict --weights random --device gpu0 --source "$IMG" --out "$T/ocuda"
"$BIN" bench --weights random --imgsz 128 --runs 3 --threads 1 --per-layer >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "bench: exit $rc ($(cat "$T/err"))"
"$BIN" bench --weights random --imgsz 64 --square --runs 3 --tasks vision >"$T/out2" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "bench vision: exit $rc ($(cat "$T/err"))"
if [ -n "$PY" ]; then
  $PY - "$T/out" "$T/out2" <<'PYEOF' && ok || bad "bench JSON is not as documented"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
j = json.loads(lines[0])
for k in ('median_ms', 'min_ms', 'first_ms', 'stages_median_ms', 'peak_rss_mb', 'kernels', 'cpu', 'layers', 'threads', 'runs'):
    assert k in j, k
assert j['input'] == [96, 128] and j['runs'] == 3 and j['threads'] == 1 and j['tasks'] == 'all'
assert 0 < j['min_ms'] <= j['median_ms']
assert set(j['stages_median_ms']) >= {'vision', 'detect', 'masks', 'semantic', 'panoptic'}
layers = [l['layer'] for l in j['layers']]
assert layers[0] == '1' and '17' in layers and layers[-1] in ('55', '56'), layers
assert abs(sum(l['share'] for l in j['layers']) - 1) < 0.01
conv = [l for l in j['layers'] if l['layer'] == '3'][0]
assert conv['gflop'] > 0 and conv['gflops'] > 0
v = json.loads(open(sys.argv[2]).read())
assert v['tasks'] == 'vision' and v['input'] == [64, 64] and 'layers' not in v and list(v['stages_median_ms']) == ['vision']
PYEOF
fi
# ---- train-step (Training II): one iteration of upstream's loop on the tiny training weights and
# the iteration fixture's batch (tests/fixtures/iter/batch.npz, as np.savez writes train.py's loop variables)
TW="$FIX/train/weights.gguf"; TB="$FIX/iter/batch.npz"
if [ -f "$TW" ] && [ -f "$TB" ]; then
  OMP_WAIT_POLICY=passive "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/r.npz" --ni 50 --nb 100 --threads 2 >"$T/out" 2>"$T/err" \
    && ok || bad "train-step failed: $(cat "$T/err")"
  [ -f "$T/r.npz" ] && ok || bad "train-step wrote no result"
  [ -e "$T/r.npz.tmp" ] && bad "train-step left its temporary file" || ok
  grep -q '"command":"train-step"' "$T/out" && ok || bad "train-step printed no JSON line"
  if [ -n "$PY" ]; then
    $PY - "$T/r.npz" "$FIX/iter" <<'PYEOF' && ok || bad "train-step result is not upstream's"
import sys, numpy as np
r = np.load(sys.argv[1]); d = sys.argv[2]
items = np.load(d + '/iter0.items_vision.npy')
names = ['box_loss', 'seg_loss', 'cls_loss', 'dfl_loss', 'fcl_loss', 'dic_loss']
got = np.array([r['loss_items.' + n][0] for n in names])
assert np.allclose(got, items, rtol=1e-4, atol=0), (got, items)
assert abs(r['loss.vision'][0] / np.load(d + '/iter0.loss_vision.npy')[0] - 1) < 1e-4
# the caption pass runs on weights one AdamW step later: float32 noise of tiny gradients moves
# them by up to 0.1 lr, so the caption loss agrees to ~1 % (docs/training.md)
assert abs(r['loss.caption'][0] / np.load(d + '/iter0.loss_caption.npy')[0] - 1) < 0.02
assert abs(r['loss_items.cap_loss'][0] * 2 - r['loss.caption'][0]) < 1e-6
lr = np.load(d + '/iter0.lr.npy')
assert np.allclose(r['lr.vision'], lr[0]) and np.allclose(r['lr.caption'], lr[1])
keys = set(r.files)
for k in ('grad_vision.model.1.conv.weight', 'grad_language.model.56.grit_transformer.cap_generator.fc.weight',
          'model.1.conv.weight', 'model.1.bn.running_mean', 'ema.model.55.cv2.0.0.conv.weight'):
    assert k in keys, k
assert 'grad_vision.model.56.grit_transformer.cap_generator.layers.0.fc_alpha2.weight' not in keys  # never a gradient
assert r['model.1.conv.weight'].shape == (8, 3, 3, 3) or r['model.1.conv.weight'].ndim == 4
PYEOF
    $PY - "$TB" "$T" <<'PYEOF' || bad "could not write the bad batches"
import sys, numpy as np
b = dict(np.load(sys.argv[1])); t = sys.argv[2]
np.savez_compressed(t + '/z.npz', **b)
c = dict(b); del c['semasks']; np.savez(t + '/nosem.npz', **c)
c = dict(b); c['semasks'] = b['semasks'][:, :10]; np.savez(t + '/shape.npz', **c)
c = dict(b); c['src_masks'] = np.ones_like(b['src_masks']); np.savez(t + '/pad.npz', **c)
c = dict(b); c['targets'] = b['targets'].copy(); c['targets'][0, 1] = 500; np.savez(t + '/cls.npz', **c)
raw = open(t + '/nosem.npz', 'rb').read(); open(t + '/trunc.npz', 'wb').write(raw[:len(raw) // 2])
raw = bytearray(open(sys.argv[1], 'rb').read()); raw[200] ^= 0xFF; open(t + '/crc.npz', 'wb').write(bytes(raw))
PYEOF
    expect_error "train-step compressed npz" "np.savez_compressed" "$BIN" train-step --weights "$TW" --batch "$T/z.npz" --out "$T/x.npz"
    expect_error "train-step missing array" "'semasks' is missing" "$BIN" train-step --weights "$TW" --batch "$T/nosem.npz" --out "$T/x.npz"
    expect_error "train-step bad shape" "semasks has shape" "$BIN" train-step --weights "$TW" --batch "$T/shape.npz" --out "$T/x.npz"
    expect_error "train-step padding" "src_masks marks padding" "$BIN" train-step --weights "$TW" --batch "$T/pad.npz" --out "$T/x.npz"
    expect_error "train-step class" "class 500" "$BIN" train-step --weights "$TW" --batch "$T/cls.npz" --out "$T/x.npz"
    expect_error "train-step truncated npz" "not a ZIP archive\|truncated\|outside" "$BIN" train-step --weights "$TW" --batch "$T/trunc.npz" --out "$T/x.npz"
    expect_error "train-step corrupted npz" "CRC-32 mismatch\|not a .npy" "$BIN" train-step --weights "$TW" --batch "$T/crc.npz" --out "$T/x.npz"
    [ -e "$T/x.npz" ] && bad "a failed train-step wrote a result" || ok
  fi
  # --save then --resume: the second iteration starts from the saved state
  OMP_WAIT_POLICY=passive "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/r1.npz" --ni 50 --threads 2 --save "$T/s.gguf" >/dev/null 2>"$T/err" \
    && [ -f "$T/s.gguf" ] && ok || bad "train-step --save: $(cat "$T/err")"
  OMP_WAIT_POLICY=passive "$BIN" train-step --weights "$T/s.gguf" --resume --batch "$TB" --out "$T/r2.npz" --ni 51 --threads 2 >"$T/out" 2>"$T/err" \
    && grep -q '"ni":51' "$T/out" && ok || bad "train-step --resume: $(cat "$T/err")"
  OMP_WAIT_POLICY=passive "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/r3.npz" --ni 150 --threads 2 --freeze 10 --frozen-bn >/dev/null 2>"$T/err" \
    && ok || bad "train-step --freeze --frozen-bn: $(cat "$T/err")"
  if [ -n "$PY" ] && [ -f "$T/r3.npz" ]; then
    $PY - "$T/r3.npz" "$TW" "$FIX/../../weights_tools" <<'PYEOF' && ok || bad "train-step --freeze/--frozen-bn changed frozen tensors"
import sys, numpy as np
sys.path.insert(0, sys.argv[3])
import convert as gconv
r = np.load(sys.argv[1]); _, w = gconv.read_gguf(sys.argv[2])
for k in ('model.1.conv.weight', 'model.9.cv1.conv.weight', 'model.3.cv1.bn.running_mean', 'model.20.cv1.bn.weight'):
    assert np.array_equal(r[k], w[k]), k
assert not np.array_equal(r['model.20.cv1.conv.weight'], w['model.20.cv1.conv.weight'])
assert 'grad_vision.model.1.conv.weight' not in r.files
PYEOF
  fi
  OMP_WAIT_POLICY=passive "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/r4.npz" --ni 50 --threads 2 --optimizer sgd >"$T/out" 2>"$T/err" \
    && ok || bad "train-step --optimizer sgd: $(cat "$T/err")"
  expect_error "train-step bad optimizer" "wants adamw or sgd" "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/x.npz" --optimizer lion
  expect_error "train-step resume without state" "holds no training state" "$BIN" train-step --weights "$TW" --resume --batch "$TB" --out "$T/x.npz"
  expect_error "train-step inference weights" "convert.py --training" "$BIN" train-step --weights "$W" --batch "$TB" --out "$T/x.npz"
  expect_error "train-step bad ni" "--ni must be in" "$BIN" train-step --weights "$TW" --batch "$TB" --out "$T/x.npz" --ni -3
  expect_error "train-step no batch" "needs --weights, --batch and --out" "$BIN" train-step --weights "$TW"
fi
# ---- datagen and train (Training III): a tiny generated dataset, a one-epoch run, Ctrl-C and --resume
"$BIN" datagen --out "$T/ds" --train 8 --val 4 --seed 5 --min-size 100 --max-size 128 >"$T/out" 2>"$T/err" && ok || bad "datagen failed: $(cat "$T/err")"
[ -f "$T/ds/data.yaml" ] && [ -f "$T/ds/images/val/1000001.png" ] && [ -f "$T/ds/labels/train/1.txt" ] && [ -f "$T/ds/stuff/train/1.png" ] \
  && [ -f "$T/ds/annotations/captions_train.json" ] && ok || bad "datagen: files missing"
expect_error "datagen no out" "--out" "$BIN" datagen --train 3
expect_error "datagen bad count" "--train" "$BIN" datagen --out "$T/ds2" --train -1
mkdir -p "$T/foreign"; echo keep >"$T/foreign/x.txt"
expect_error "datagen foreign folder" "not empty\|not a gyolo datagen" "$BIN" datagen --out "$T/foreign" --train 2 --val 1
[ -f "$T/foreign/x.txt" ] && ok || bad "datagen removed a foreign file"
expect_error "train no data" "needs --data" "$BIN" train --epochs 1
expect_error "train missing yaml" "data.yaml\|cannot open" "$BIN" train --data "$T/nope/data.yaml"
expect_error "train bad imgsz" "multiple of 32" "$BIN" train --data "$T/ds/data.yaml" --imgsz 100
expect_error "train bad variant" "is not one of" "$BIN" train --data "$T/ds/data.yaml" --variant huge --vocab "$FIX/../../weights_tools/data/vocab.txt"
expect_error "train small imgsz" "anchors" "$BIN" train --data "$T/ds/data.yaml" --imgsz 64 --batch 4 --epochs 1 --vocab "$FIX/../../weights_tools/data/vocab.txt" --vocab-subset --out "$T/tr0" --threads 2
OMP_WAIT_POLICY=passive "$BIN" train --data "$T/ds/data.yaml" --imgsz 128 --batch 4 --epochs 1 --threads 2 --workers 1 --out "$T/tr" \
  --vocab "$FIX/../../weights_tools/data/vocab.txt" --vocab-subset >"$T/out_tr" 2>"$T/err" && ok || bad "train failed: $(cat "$T/err")"
/usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).readline()); assert j['epoch']==1 and 'val' in j and 'box' in j['loss'], j" "$T/out_tr" \
  && ok || bad "train: JSON line: $(head -c 300 "$T/out_tr")"
[ -f "$T/tr/last.gguf" ] && [ -f "$T/tr/best.gguf" ] && ok || bad "train: no last.gguf / best.gguf"
ls "$T/tr" | grep -q tmp && bad "train: temporary files left" || ok
"$BIN" predict --weights "$T/tr/best.gguf" --source "$T/ds/images/val/1000001.png" --out "$T/trp" --imgsz 128 >"$T/out" 2>"$T/err" \
  && [ -f "$T/trp/1000001.png" ] && [ -f "$T/trp/1000001_semantic_color.png" ] && ok || bad "predict with a gyolo-trained model: $(cat "$T/err")"
"$BIN" val --weights "$T/tr/best.gguf" --data "$T/ds/data.yaml" --imgsz 128 --threads 2 >"$T/out" 2>"$T/err" \
  && grep -q '"box_map50"' "$T/out" && grep -q '"images":4' "$T/out" && ok || bad "val: $(cat "$T/err") $(head -c 300 "$T/out")"
expect_error "val no data" "needs --weights and --data" "$BIN" val --weights "$T/tr/best.gguf"
# Ctrl-C: last.gguf saved, exit 130; --resume finishes the run
OMP_WAIT_POLICY=passive "$BIN" train --data "$T/ds/data.yaml" --imgsz 128 --batch 2 --epochs 2 --threads 2 --workers 1 --out "$T/tc" \
  --vocab "$FIX/../../weights_tools/data/vocab.txt" --vocab-subset >"$T/out" 2>"$T/err" &
pid=$!
for i in $(seq 1 600); do [ -f "$T/tc/last.gguf" ] && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] || [ $rc -eq 0 ] && ok || bad "train after SIGINT: exit $rc ($(cat "$T/err"))"
[ -f "$T/tc/last.gguf" ] && ok || bad "train after SIGINT: no last.gguf"
if [ $rc -eq 130 ]; then
  grep -q "gyolo train --resume" "$T/err" && ok || bad "train after SIGINT: no resume hint"
  OMP_WAIT_POLICY=passive "$BIN" train --resume "$T/tc/last.gguf" --threads 2 --workers 1 --json >"$T/out" 2>"$T/err" && ok || bad "train --resume: $(cat "$T/err")"
  grep -q '"epoch":2' "$T/out" && ok || bad "train --resume did not finish epoch 2: $(head -c 300 "$T/out")"
fi
expect_error "train resume from converted weights" "gyolo.train" "$BIN" train --resume "$W"
# the caption stage (--freeze 56) from a run's last.gguf (its EMA): no vision losses, the vision metrics
# exactly those of the run it starts from, best.gguf chosen by BLEU-4; --hyp as upstream's hyp yaml
printf 'lr0: 0.002\ncaption_loss_gain: 1.0\nbox: 7.5\n' >"$T/hyp.yaml"
OMP_WAIT_POLICY=passive "$BIN" train --data "$T/ds/data.yaml" --weights "$T/tr/last.gguf" --freeze 56 --hyp "$T/hyp.yaml" --imgsz 128 --batch 4 \
  --epochs 1 --threads 2 --workers 1 --out "$T/tcap" --json >"$T/out" 2>"$T/err" && ok || bad "train --freeze 56: $(cat "$T/err")"
grep -q "'box' is not used by gyolo" "$T/err" && ok || bad "train --hyp: no warning for upstream's box gain: $(cat "$T/err")"
/usr/bin/python3 - "$T/out_tr" "$T/out" <<'PYEOF' && ok || bad "train --freeze 56: $(head -c 600 "$T/out")"
import json, sys
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
assert all(b['loss'][k] == 0 for k in ('box', 'seg', 'cls', 'dfl', 'fcl', 'dic')) and b['loss']['cap'] > 0, b['loss']
for k in ('box_map50', 'box_map50_95', 'mask_map50', 'semantic_miou', 'pq'):
    assert a['val'][k] == b['val'][k], (k, a['val'][k], b['val'][k])
assert b['fitness'] == b['val']['bleu4'] and b['best'], b
PYEOF
"$BIN" predict --weights "$T/tcap/best.gguf" --source "$T/ds/images/val/1000001.png" --out "$T/tcp" --imgsz 128 >/dev/null 2>"$T/err" \
  && ok || bad "predict after the caption stage: $(cat "$T/err")"
# ... and from an inference weights file (a best.gguf, as models/gyolo-shapes.gguf): the auxiliary branch
# it lacks starts from its initialisation (a warning says so); the vision metrics are still the run's
OMP_WAIT_POLICY=passive "$BIN" train --data "$T/ds/data.yaml" --weights "$T/tr/best.gguf" --freeze 56 --imgsz 128 --batch 4 \
  --epochs 1 --threads 2 --workers 1 --out "$T/tcap2" --json >"$T/out2" 2>"$T/err" && ok || bad "train --freeze 56 from best.gguf: $(cat "$T/err")"
grep -q "is an inference weights file: the auxiliary branch" "$T/err" && ok || bad "train from best.gguf: no warning: $(cat "$T/err")"
/usr/bin/python3 - "$T/out_tr" "$T/out2" <<'PYEOF' && ok || bad "train --freeze 56 from best.gguf: $(head -c 600 "$T/out2")"
import json, sys
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
for k in ('box_map50', 'box_map50_95', 'mask_map50', 'semantic_miou', 'pq'):
    assert a['val'][k] == b['val'][k], (k, a['val'][k], b['val'][k])
PYEOF
printf 'lr0: 0.002\nlr_zero: 1\n' >"$T/hyp2.yaml"
expect_error "train --hyp unknown key" "unknown hyperparameter 'lr_zero'" "$BIN" train --data "$T/ds/data.yaml" --hyp "$T/hyp2.yaml"
printf 'lr0: fast\n' >"$T/hyp3.yaml"
expect_error "train --hyp bad value" "lr0 must be a number" "$BIN" train --data "$T/ds/data.yaml" --hyp "$T/hyp3.yaml"
expect_error "train --freeze range" "--freeze must be in" "$BIN" train --data "$T/ds/data.yaml" --freeze 57
expect_error "train --lr0 range" "--lr0 must be in" "$BIN" train --data "$T/ds/data.yaml" --lr0 0
expect_error "train --resume with --hyp" "drop --hyp" "$BIN" train --resume "$T/tr/last.gguf" --hyp "$T/hyp.yaml"
# ---- the shipped model (models/gyolo-shapes.gguf, trained by gyolo train) on the bundled scene it never saw:
# "a red triangle and a yellow star and an orange square on the snow below the sky"
SHIP="$FIX/../../models/gyolo-shapes.gguf"; SCENE="$FIX/../../examples/data/shapes.png"
if [ -f "$SHIP" ]; then
  "$BIN" predict --weights "$SHIP" --source "$SCENE" --imgsz 256 --out "$T/ship" >"$T/out" 2>"$T/err" && ok || bad "shipped model: $(cat "$T/err")"
  /usr/bin/python3 - "$T/ship/shapes.json" <<'PYEOF' && ok || bad "shipped model: wrong answers on the bundled scene"
import json, sys
j = json.load(open(sys.argv[1]))
dets = sorted(d['label'] for d in j['detections'] if d['score'] >= 0.5)
assert dets == ['square', 'star', 'triangle'], dets
cap = j['caption']
assert cap.endswith('on the snow below the sky'), cap  # the objects' colours are not yet reliable (docs/training.md)
assert {'square', 'triangle', 'star'} <= set(cap.lower().split()), cap  # the three shapes are named
cats = j['semantic']['category_ids']
assert {1 + 2, 1 + 3, 1 + 1, 5 + 0 + 1, 5 + 4 + 1} <= set(cats), cats  # triangle, star, square, sky, snow
assert any(s['isthing'] is False for s in j['panoptic']['segments_info'])
PYEOF
fi
# ---- docs/tasks.md's examples (examples/tasks.cpp): the page shows the file's code, and each runs
TASKS="$(cd "$(dirname "$BIN")" && pwd)/gyolo_tasks"
/usr/bin/python3 - "$FIX/../../examples/tasks.cpp" "$FIX/../../docs/tasks.md" <<'PYEOF' && ok || bad "docs/tasks.md does not show examples/tasks.cpp's code"
import re, sys
src, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
blocks = dict(re.findall(r'// \[(\w+)\][^\n]*\n(.*?)\n// \[\1\]', src, re.S))
assert sorted(blocks) == ['caption', 'detect', 'masks', 'panoptic', 'semantic'], sorted(blocks)
for k, b in blocks.items():
    assert '```cpp\n' + b.strip('\n') + '\n```' in doc, k
PYEOF
if [ -f "$SHIP" ] && [ -x "$TASKS" ]; then
  mkdir -p "$T/tasks"
  run_task() { (cd "$T/tasks" && "$TASKS" "$1" "$SHIP" "$SCENE") >"$T/tasks/$1.txt" 2>&1; }
  run_task detect && [ "$(grep -c '^\(square\|star\|triangle\) \(0\.[5-9]\|1\.00\)' "$T/tasks/detect.txt")" = 3 ] && ok || bad "tasks detect: $(cat "$T/tasks/detect.txt")"
  run_task masks && grep -q "^dense: 3 x 316 x 316" "$T/tasks/masks.txt" && ok || bad "tasks masks: $(cat "$T/tasks/masks.txt")"
  run_task semantic && grep -q "^categories present:.* 6 .*10" "$T/tasks/semantic.txt" && [ -f "$T/tasks/semantic.png" ] && ok ||
    bad "tasks semantic: $(cat "$T/tasks/semantic.txt")"
  run_task panoptic && grep -q "(thing)" "$T/tasks/panoptic.txt" && grep -q "(stuff)" "$T/tasks/panoptic.txt" && [ -f "$T/tasks/panoptic.png" ] && ok ||
    bad "tasks panoptic: $(cat "$T/tasks/panoptic.txt")"
  run_task caption && grep -q "on the snow below the sky$" "$T/tasks/caption.txt" && ok || bad "tasks caption: $(cat "$T/tasks/caption.txt")"
fi
# ---- a task that cannot run on an image is skipped with the reason; the others still run
if [ -f "$SHIP" ]; then
  { printf 'P6\n700 8\n255\n'; head -c 16800 /dev/zero | tr '\0' '\200'; } >"$T/wide.ppm"
  "$BIN" predict --weights "$SHIP" --source "$T/wide.ppm" --imgsz 128 --out "$T/wide" >"$T/out" 2>"$T/err" && ok || bad "wide image: $(cat "$T/err")"
  grep -q "caption skipped: the network input 128x32 has 84 anchors and the caption needs at least 300" "$T/err" && ok ||
    bad "wide image: no skip message: $(cat "$T/err")"
  /usr/bin/python3 -c "
import json, sys
j = json.load(open('$T/wide/wide.json'))
assert j['caption'] is None and j['skipped'][0]['task'] == 'caption', j['skipped']
assert j['semantic'] is not None and j['panoptic'] is not None
" && ok || bad "wide image: JSON lacks the skipped caption or the other tasks"
fi
# ---- --source as a glob pattern and as a list file; terminal (summary + progress bar) and JSON modes
if [ -f "$SHIP" ]; then
  mkdir -p "$T/src/sub"; cp "$SCENE" "$T/src/one.png"; cp "$SCENE" "$T/src/two.png"; cp "$SCENE" "$T/src/sub/three.png"
  "$BIN" predict --weights "$SHIP" --source "$T/src/*.png" --imgsz 256 --out "$T/g" >"$T/out" 2>"$T/err" && ok || bad "glob source: $(cat "$T/err")"
  [ "$(grep -c '"image"' "$T/out")" = 2 ] && [ -f "$T/g/one.json" ] && [ -f "$T/g/two.json" ] && ok || bad "glob source: expected one.png and two.png"
  expect_error "glob matches nothing" "matches no files" "$BIN" predict --weights "$SHIP" --source "$T/src/*.jpg" --out "$T/g0"
  printf '# images to run\nsub/three.png\n\n%s\n' "$T/src/one.png" >"$T/src/list.txt"
  "$BIN" predict --weights "$SHIP" --source "$T/src/list.txt" --imgsz 256 --out "$T/l" >"$T/out" 2>"$T/err" && ok || bad "list source: $(cat "$T/err")"
  [ "$(grep -c '"image"' "$T/out")" = 2 ] && [ -f "$T/l/three.json" ] && [ -f "$T/l/one.json" ] && ok || bad "list source: expected three and one"
  printf 'missing.png\n' >"$T/src/bad.txt"
  expect_error "list with a missing file" "missing.png" "$BIN" predict --weights "$SHIP" --source "$T/src/bad.txt" --imgsz 256 --out "$T/l2"
  # On a terminal (script(1) gives the command one): a summary line per image and the totals, no JSON.
  if command -v script >/dev/null; then
    mkdir -p "$T/srcdir"; cp "$T/src/one.png" "$T/src/two.png" "$T/src/sub/three.png" "$T/srcdir/"
    script -qec "'$BIN' predict --weights '$SHIP' --source '$T/srcdir' --imgsz 256 --out '$T/tty'" /dev/null >"$T/tty.raw" 2>&1 && ok || bad "terminal mode: $(cat "$T/tty.raw")"
    sed 's/\x1b\[K//g; s/\r/\n/g' "$T/tty.raw" >"$T/tty.txt"  # the bar's carriage returns and line erasures as line breaks
    grep -q "^image 1/3 .*one.png 316x316: 1 square, 1 triangle, 1 star; \".* on the snow below the sky\" ([0-9]* ms)" "$T/tty.txt" && ok ||
      bad "terminal mode: no summary line: $(head -c 600 "$T/tty.txt")"
    grep -q "^3 images in .* img/s); results in $T/tty/" "$T/tty.txt" && ok || bad "terminal mode: no totals line"
    grep -q "img/s ETA" "$T/tty.txt" && ok || bad "terminal mode: no progress bar"
    grep -q '"detections"' "$T/tty.txt" && bad "terminal mode printed JSON" || ok
    script -qec "'$BIN' predict --weights '$SHIP' --source '$T/src/one.png' --imgsz 256 --out '$T/tty2' --json" /dev/null >"$T/tty.txt" 2>&1 && ok || bad "--json on a terminal"
    grep -q '^{"caption"' "$T/tty.txt" && ok || bad "--json on a terminal: no JSON line: $(head -c 300 "$T/tty.txt")"
  fi
fi
# ---- odd sources and outputs: FIFOs are refused (never opened), a symlink loop in a folder is
# reported while the other images run, and a failed image leaves none of its files behind
mkfifo "$T/fifo"
timeout 60 "$BIN" predict --weights random --source "$T/fifo" --out "$T/of" --imgsz 64 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "not a regular file" "$T/err" && ok || bad "fifo source: rc $rc, $(cat "$T/err")"
mkdir -p "$T/odd"; cp "$IMG" "$T/odd/a.jpg"; mkfifo "$T/odd/pipe.jpg"; ln -s loop1.jpg "$T/odd/loop2.jpg"; ln -s loop2.jpg "$T/odd/loop1.jpg"
timeout 120 "$BIN" predict --weights random --source "$T/odd" --out "$T/oo" --imgsz 64 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && ok || bad "odd folder: rc $rc (expected 1: the loop reported)"
grep -q "loop1.jpg" "$T/err" && grep -q "loop2.jpg" "$T/err" && ok || bad "odd folder: symlink loop not reported: $(cat "$T/err")"
[ -f "$T/oo/a.json" ] && ok || bad "odd folder: the good image was not processed"
grep -q "pipe.jpg" "$T/err" "$T/out" && bad "odd folder: the FIFO was touched" || ok
mkdir -p "$T/od/horses.png"
"$BIN" predict --weights random --source "$IMG" --out "$T/od" --imgsz 64 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "not a regular file" "$T/err" && ok || bad "output name is a folder: rc $rc, $(cat "$T/err")"
[ "$(ls -A "$T/od")" = "horses.png" ] && ok || bad "output name is a folder: files left behind: $(ls -A "$T/od")"
# ---- video (where gyolo was built with FFmpeg): frames decoded from a lossless video give exactly
# the results of the same images; <stem>.jsonl and the annotated <stem>.mp4; bad videos leave nothing
SHIPV="$FIX/../../models/gyolo-shapes.gguf"
if "$BIN" datagen --video "$T/v.mkv" --frames 3 --size 256 --seed 5 >"$T/out" 2>"$T/err"; then
  "$BIN" datagen --out "$T/vd" --train 0 --val 3 --min-size 256 --max-size 256 --seed 5 >/dev/null || bad "video: datagen images"
  "$BIN" predict --weights "$SHIPV" --source "$T/v.mkv" --imgsz 256 --out "$T/ov" --json >"$T/v.jsonl" 2>"$T/err" && ok || bad "video predict: $(cat "$T/err")"
  "$BIN" predict --weights "$SHIPV" --source "$T/vd/images/val" --imgsz 256 --out "$T/ovi" --json >"$T/vi.jsonl" 2>"$T/err" && ok || bad "video images: $(cat "$T/err")"
  /usr/bin/python3 - "$T/v.jsonl" "$T/vi.jsonl" "$T/ov/v.jsonl" <<'PYEOF' && ok || bad "video: frames differ from images"
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
im = [json.loads(l) for l in open(sys.argv[2])]
rec = [json.loads(l) for l in open(sys.argv[3])]
assert [r['frame'] for r in v] == [0, 1, 2], [r['frame'] for r in v]
assert [round(r['time_s'], 6) for r in v] == [0.0, 0.2, 0.4], [r['time_s'] for r in v]
assert len(rec) == 3 and all('mask' in d for r in rec for d in r['detections'])
for a, b, c in zip(v, im, rec):
    assert a['detections'] == b['detections'] and a['caption'] == b['caption'], (a, b)
    assert [d['box'] for d in c['detections']] == [d['box'] for d in a['detections']]
    assert a['num_detections'] > 0
PYEOF
  # the annotated video: 3 frames of the source's size
  "$BIN" predict --weights "$SHIPV" --source "$T/ov/v.mp4" --imgsz 256 --tasks det --no-draw --out "$T/ov2" --json >"$T/v2.jsonl" 2>"$T/err" &&
    [ "$(grep -c '"height":256,' "$T/v2.jsonl")" -eq 3 ] && ok || bad "annotated video: $(cat "$T/err")"
  "$BIN" predict --weights "$SHIPV" --source "$T/v.mkv" --imgsz 256 --tasks det --max-frames 2 --no-draw --out "$T/ov3" --json >"$T/v3.jsonl" 2>"$T/err" &&
    [ "$(wc -l <"$T/v3.jsonl")" -eq 2 ] && [ ! -e "$T/ov3/v.mp4" ] && [ -f "$T/ov3/v.jsonl" ] && ok || bad "--max-frames 2 / --no-draw"
  # a video and an image in one folder: both run, in list order
  mkdir -p "$T/mix"; cp "$T/v.mkv" "$T/mix/b.mkv"; cp "$T/vd/images/val/1000001.png" "$T/mix/a.png"
  "$BIN" predict --weights "$SHIPV" --source "$T/mix" --imgsz 256 --tasks det --out "$T/omix" --json >"$T/mix.jsonl" 2>"$T/err" &&
    [ "$(wc -l <"$T/mix.jsonl")" -eq 4 ] && [ -f "$T/omix/a.json" ] && [ -f "$T/omix/b.mp4" ] && ok || bad "image + video folder: $(cat "$T/err")"
  # garbage and truncated videos: one line naming the file, exit 1, no files left
  head -c 3000 /dev/urandom >"$T/junk.mp4"
  expect_error "garbage video" "video '.*junk.mp4'" "$BIN" predict --weights "$SHIPV" --source "$T/junk.mp4" --imgsz 256 --out "$T/oj"
  [ -z "$(ls -A "$T/oj" 2>/dev/null)" ] && ok || bad "garbage video: files left: $(ls -A "$T/oj")"
  head -c 20 "$T/v.mkv" >"$T/trunc.mkv"
  expect_error "truncated video" "trunc.mkv" "$BIN" predict --weights "$SHIPV" --source "$T/trunc.mkv" --imgsz 256 --out "$T/ot"
  [ -z "$(ls -A "$T/ot" 2>/dev/null)" ] && ok || bad "truncated video: files left: $(ls -A "$T/ot")"
  expect_error "video --save-raw" "--save-raw is for images" "$BIN" predict --weights "$SHIPV" --source "$T/v.mkv" --imgsz 256 --out "$T/os" --save-raw
  expect_error "bad --max-frames" "--max-frames" "$BIN" predict --weights "$SHIPV" --source "$T/v.mkv" --out "$T/os" --max-frames 0
  if command -v script >/dev/null; then
    script -qec "'$BIN' predict --weights '$SHIPV' --source '$T/v.mkv' --imgsz 256 --tasks det,cap --out '$T/ovt'" /dev/null >"$T/tty.txt" 2>&1 && ok || bad "video on a terminal"
    grep -q "video 1/1 (frame 3) $T/v.mkv 256x256: " "$T/tty.txt" && grep -q "video $T/v.mkv: 3 frames -> " "$T/tty.txt" && ok ||
      bad "video on a terminal: $(head -c 600 "$T/tty.txt")"
  fi
else
  grep -q "without video support" "$T/err" && ok || bad "datagen --video: $(cat "$T/err")"
fi
# ---- only bad images: non-zero exit, no outputs
mkdir -p "$T/allbad"; cp "$FIX/image/empty.jpg" "$T/allbad/x.jpg"
"$BIN" predict --weights random --source "$T/allbad" --out "$T/o8" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && ok || bad "all bad: exit 0"
[ -z "$(ls -A "$T/o8" 2>/dev/null)" ] && ok || bad "all bad: files written"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
