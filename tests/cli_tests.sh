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
expect_error "unknown command" "unknown command" "$BIN" frobnicate
expect_error "unknown flag" "unknown option '--bogus'" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --bogus
expect_error "bad imgsz" "--imgsz must be a multiple of 32" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --imgsz 100
expect_error "non-numeric imgsz" "expects an integer" "$BIN" predict --weights random --source "$IMG" --out "$T/o" --imgsz abc
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
# A directory with one good and one bad image: the good one is processed, the bad one reported.
mkdir -p "$T/mixed"; cp "$IMG" "$T/mixed/a.jpg"; head -c 300 "$IMG" >"$T/mixed/b.jpg"
"$BIN" predict --weights random --source "$T/mixed" --out "$T/o4" --imgsz 320 --save-raw >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && ok || bad "mixed dir: exit 0"
grep -q "b.jpg" "$T/err" && ok || bad "mixed dir: bad image not reported"
[ "$(grep -c '"image"' "$T/out")" = 1 ] && ok || bad "mixed dir: expected one JSON line"
[ -f "$T/o4/a_raw/pred.npy" ] && ok || bad "mixed dir: good image has no raw output"
[ -e "$T/o4/b_raw" ] && bad "mixed dir: bad image left files" || ok
ls -a "$T/o4" | grep -q tmp && bad "temporary files left" || ok
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
