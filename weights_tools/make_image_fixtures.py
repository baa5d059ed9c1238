#!/usr/bin/python3
"""Generates the image-IO test fixtures under tests/fixtures/image/.

Run with Debian's interpreter (it has cv2 4.6 = python3-opencv, numpy and PIL):

    /usr/bin/python3 weights_tools/make_image_fixtures.py [--data /work/shared/data]

Every reference array is what Debian's OpenCV 4.6 returns (cv2.imread with IMREAD_COLOR,
cv2.resize, and upstream's letterbox), stored as .npy.  The C++ tests in tests/test_image.cpp
compare gyolo's decoder / resize / letterbox with these bit for bit.

Inputs written here:
  PNG   gray8, gray1, gray16, gray+alpha, RGB, RGBA, RGBA16, palette(4-bit, tRNS), interlaced RGB,
        PNG with an eXIf chunk (orientation 6); written by a tiny PNG writer below so every colour
        type / bit depth is under our control.
  JPEG  baseline 4:2:0, progressive, grayscale, 4:4:4, restart intervals, CMYK (PIL), EXIF
        orientation 1..8 (APP1 segment built by hand), a truncated scan (cv2 returns the partly
        decoded image).
  BMP, PPM, PGM written by cv2.
  Broken inputs: empty file, random bytes, truncated JPEG header, PNG/JPEG headers that declare
        huge dimensions.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import zlib

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "image")


# ----------------------------------------------------------------------------------------------
# upstream utils/caption/augmentations.py::letterbox (verbatim logic)
def letterbox(im, new_shape=(640, 640), color=(114, 114, 114), auto=True, scaleFill=False, scaleup=True, stride=32):
    shape = im.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scaleFill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (dw, dh), (top, bottom, left, right), new_unpad


# ----------------------------------------------------------------------------------------------
def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def write_png(path, rows_bytes, w, h, bit_depth, color_type, plte=None, trns=None, extra_before=b"",
              extra_after=b""):
    """rows_bytes: list of h packed scanlines (without filter byte)."""
    raw = b"".join(b"\x00" + r for r in rows_bytes)
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        data += png_chunk(b"PLTE", plte)
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    data += extra_before
    data += png_chunk(b"IDAT", zlib.compress(raw, 9))
    data += extra_after
    data += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)
    return data


def pack_bits(vals, depth):
    out = bytearray()
    per = 8 // depth
    for i in range(0, len(vals), per):
        b = 0
        for j in range(per):
            v = vals[i + j] if i + j < len(vals) else 0
            b |= (int(v) & ((1 << depth) - 1)) << (8 - depth * (j + 1))
        out.append(b)
    return bytes(out)


def tiff_orientation(orient, big_endian=True):
    """Minimal TIFF header + IFD0 with one Orientation entry."""
    if big_endian:
        return (b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) +
                struct.pack(">HHIHH", 0x0112, 3, 1, orient, 0) + b"\x00\x00\x00\x00")
    return (b"II\x2a\x00\x08\x00\x00\x00" + struct.pack("<H", 1) +
            struct.pack("<HHIHH", 0x0112, 3, 1, orient, 0) + b"\x00\x00\x00\x00")


def jpeg_with_exif(jpeg_bytes, tiff):
    app1 = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return jpeg_bytes[:2] + seg + jpeg_bytes[2:]


def make_image(h, w, seed):
    """Smooth gradients plus noise: exercises rounding in resize everywhere."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    b = (x * 255.0 / max(w - 1, 1))
    g = (y * 255.0 / max(h - 1, 1))
    r = 128 + 100 * np.sin(x / 3.0 + y / 5.0)
    im = np.stack([b, g, r], -1) + rs.normal(0, 25, (h, w, 3))
    return np.clip(im, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    args = ap.parse_args()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    P = lambda n: os.path.join(OUT, n)
    meta = {"cv2_version": cv2.__version__, "decode": [], "resize_linear": [], "resize_area": [],
            "letterbox": [], "errors": [], "horses": {}}

    def ref_decode(name):
        im = cv2.imread(P(name), cv2.IMREAD_COLOR)
        assert im is not None, name
        np.save(P(name + ".npy"), im)
        meta["decode"].append(name)
        return im

    rs = np.random.RandomState(1)
    base = make_image(23, 37, 0)             # odd sizes, BGR
    noise = rs.randint(0, 256, (48, 64, 3), dtype=np.uint8)

    # ---------------- PNG variants (hand-written)
    h, w = 23, 37
    gray = base[:, :, 1].copy()
    write_png(P("gray8.png"), [gray[i].tobytes() for i in range(h)], w, h, 8, 0)
    g1 = (gray > 128).astype(np.uint8)
    write_png(P("gray1.png"), [pack_bits(g1[i], 1) for i in range(h)], w, h, 1, 0)
    g16 = (gray.astype(np.uint16) * 257 + rs.randint(0, 257, gray.shape)).astype(">u2")
    write_png(P("gray16.png"), [g16[i].tobytes() for i in range(h)], w, h, 16, 0)
    alpha = rs.randint(0, 256, (h, w), dtype=np.uint8)
    ga = np.stack([gray, alpha], -1)
    write_png(P("gray_alpha.png"), [ga[i].tobytes() for i in range(h)], w, h, 8, 4)
    rgb = base[:, :, ::-1].copy()
    write_png(P("rgb8.png"), [rgb[i].tobytes() for i in range(h)], w, h, 8, 2)
    rgba = np.concatenate([rgb, alpha[:, :, None]], -1)
    write_png(P("rgba8.png"), [rgba[i].tobytes() for i in range(h)], w, h, 8, 6)
    rgba16 = (rgba.astype(np.uint16) * 257 + rs.randint(0, 257, rgba.shape)).astype(">u2")
    write_png(P("rgba16.png"), [rgba16[i].tobytes() for i in range(h)], w, h, 16, 6)
    pal = rs.randint(0, 256, (16, 3), dtype=np.uint8)
    idx = (base[:, :, 0] // 16).astype(np.uint8)
    trns = bytes(rs.randint(0, 256, 16, dtype=np.uint8))
    write_png(P("palette4.png"), [pack_bits(idx[i], 4) for i in range(h)], w, h, 4, 3, plte=pal.tobytes(), trns=trns)
    # interlaced PNG: let cv2 write one
    cv2.imwrite(P("rgb_cv2.png"), base)
    for n in ["gray8.png", "gray1.png", "gray16.png", "gray_alpha.png", "rgb8.png", "rgba8.png", "rgba16.png",
              "palette4.png", "rgb_cv2.png"]:
        ref_decode(n)
    # PNG with eXIf (orientation 6) before IDAT and (orientation 3) after IDAT
    write_png(P("exif6.png"), [rgb[i].tobytes() for i in range(h)], w, h, 8, 2,
              extra_before=png_chunk(b"eXIf", tiff_orientation(6, True)))
    write_png(P("exif3_after_idat.png"), [rgb[i].tobytes() for i in range(h)], w, h, 8, 2,
              extra_after=png_chunk(b"eXIf", tiff_orientation(3, False)))
    ref_decode("exif6.png")
    ref_decode("exif3_after_idat.png")

    # ---------------- BMP / PNM
    cv2.imwrite(P("rgb.bmp"), base)
    cv2.imwrite(P("gray.bmp"), gray)
    cv2.imwrite(P("rgb.ppm"), base)
    cv2.imwrite(P("gray.pgm"), gray)
    # hand-written PNM: comment, maxval 100 (not rescaled by cv2), 16-bit (v >> 8)
    with open(P("m100.pgm"), "wb") as f:
        f.write(b"P5\n# comment line\n%d %d\n100\n" % (w, h) + (gray // 3).tobytes())
    with open(P("m16.ppm"), "wb") as f:
        f.write(b"P6 %d %d 65535\n" % (w, h) + rgba16[:, :, :3].astype(">u2").tobytes())
    with open(P("m1000.pgm"), "wb") as f:
        f.write(b"P5\n%d %d\n1000\n" % (w, h) + (g16 % 1001).astype(">u2").tobytes())
    for n in ["rgb.bmp", "gray.bmp", "rgb.ppm", "gray.pgm", "m100.pgm", "m16.ppm", "m1000.pgm"]:
        ref_decode(n)

    # ---------------- JPEG
    def wj(name, im, params):
        ok, buf = cv2.imencode(".jpg", im, params)
        assert ok
        with open(P(name), "wb") as f:
            f.write(buf.tobytes())
        return buf.tobytes()

    jb = wj("baseline420.jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 90])
    wj("progressive.jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    wj("gray.jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 90])
    wj("restart.jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 75, cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        wj("s444.jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    else:
        wj("s444.jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 95])
    for n in ["baseline420.jpg", "progressive.jpg", "gray.jpg", "restart.jpg", "s444.jpg"]:
        ref_decode(n)
    try:
        from PIL import Image
        Image.fromarray(base[:, :, ::-1]).convert("CMYK").save(P("cmyk.jpg"), quality=90)
        ref_decode("cmyk.jpg")
    except ImportError:
        pass
    # EXIF orientation 1..8 (alternating byte orders), and an APP1 without the "Exif" id
    for o in range(1, 9):
        with open(P(f"exif{o}.jpg"), "wb") as f:
            f.write(jpeg_with_exif(jb, tiff_orientation(o, big_endian=(o % 2 == 0))))
        ref_decode(f"exif{o}.jpg")
    # orientation 9 (invalid: ignored)
    with open(P("exif9.jpg"), "wb") as f:
        f.write(jpeg_with_exif(jb, tiff_orientation(9)))
    ref_decode("exif9.jpg")
    # truncated scan data: cv2 returns the partly decoded image (libjpeg warns, fills the rest)
    big = make_image(48, 64, 5)
    jbig = wj("tmp.jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    os.remove(P("tmp.jpg"))
    sos = jbig.find(b"\xff\xda")
    cut = sos + (len(jbig) - sos) // 2
    with open(P("truncated_scan.jpg"), "wb") as f:
        f.write(jbig[:cut])
    ref_decode("truncated_scan.jpg")

    # ---------------- broken inputs (cv2.imread must give None for each)
    def broken(name, data):
        with open(P(name), "wb") as f:
            f.write(data)
        try:
            res = cv2.imread(P(name), cv2.IMREAD_COLOR)
        except cv2.error:   # e.g. validateInputImageSize refuses absurd dimensions
            res = None
        assert res is None, name
        meta["errors"].append(name)

    broken("empty.jpg", b"")
    broken("random.bin", bytes(rs.randint(0, 256, 300, dtype=np.uint8)))
    broken("truncated_header.jpg", jb[:sos if sos < 200 else 200][:100])
    broken("random_after_soi.jpg", b"\xff\xd8\xff" + bytes(rs.randint(0, 256, 300, dtype=np.uint8)))
    # PNG declaring 200000 x 200000 (40 gigapixels) with a tiny IDAT
    pngb = open(P("rgb8.png"), "rb").read()
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 200000, 200000, 8, 2, 0, 0, 0))
    broken("huge.png", pngb[:8] + ihdr + pngb[8 + 25:])
    # JPEG SOF declaring 60000 x 60000
    sof = jb.find(b"\xff\xc0")
    jh = bytearray(jb)
    jh[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with open(P("huge.jpg"), "wb") as f:
        f.write(bytes(jh))
    meta["errors"].append("huge.jpg")   # cv2 may attempt it; gyolo refuses by the pixel cap
    # PNG with a corrupted IDAT CRC
    bad = bytearray(pngb)
    i = bad.find(b"IDAT")
    n = struct.unpack(">I", bad[i - 4:i])[0]
    bad[i + 4 + n] ^= 0xFF
    broken("bad_crc.png", bytes(bad))
    broken("truncated.png", pngb[: len(pngb) // 2])
    broken("truncated.bmp", open(P("rgb.bmp"), "rb").read()[:-1])
    broken("truncated.pgm", open(P("gray.pgm"), "rb").read()[:-1])

    # ---------------- resize (linear and area); sources stored as lossless PNG
    cv2.imwrite(P("src_base.png"), base)
    cv2.imwrite(P("src_noise.png"), noise)
    tall = make_image(45, 20, 7)
    cv2.imwrite(P("src_tall.png"), tall)
    srcs = {"src_base.png": base, "src_noise.png": noise, "src_tall.png": tall}
    lin = {"src_base.png": [(50, 31), (80, 61), (111, 69), (20, 13), (31, 17), (18, 11), (37, 10), (5, 23),
                            (1, 1), (74, 46), (36, 22)],
           "src_noise.png": [(32, 24), (21, 16), (16, 12), (100, 75), (63, 47), (65, 49), (13, 7), (128, 96)],
           "src_tall.png": [(9, 23), (33, 70), (20, 44), (21, 45)]}
    for s, sizes in lin.items():
        for (nw, nh) in sizes:
            out = cv2.resize(srcs[s], (nw, nh), interpolation=cv2.INTER_LINEAR)
            n = f"lin_{s[:-4]}_{nw}x{nh}.npy"
            np.save(P(n), out)
            meta["resize_linear"].append([s, nw, nh, n])
    area = {"src_base.png": [(20, 13), (17, 9), (36, 22), (12, 7), (37, 11), (50, 31)],
            "src_noise.png": [(32, 24), (16, 12), (21, 16), (8, 6), (40, 30), (25, 19), (7, 5), (64, 24), (32, 48)],
            "src_tall.png": [(10, 15), (7, 22), (19, 44)]}
    for s, sizes in area.items():
        for (nw, nh) in sizes:
            out = cv2.resize(srcs[s], (nw, nh), interpolation=cv2.INTER_AREA)
            n = f"area_{s[:-4]}_{nw}x{nh}.npy"
            np.save(P(n), out)
            meta["resize_area"].append([s, nw, nh, n])

    # ---------------- letterbox (small imgsz keeps the fixtures small)
    cases = [("src_base.png", 64, False, True), ("src_base.png", 64, True, True), ("src_base.png", 96, False, True),
             ("src_base.png", 32, True, False), ("src_base.png", 33, False, False), ("src_noise.png", 96, True, True),
             ("src_noise.png", 50, False, True), ("src_noise.png", 64, False, False), ("src_noise.png", 128, False, False),
             ("src_base.png", 50, True, True),    # odd padding 19 -> top 9, bottom 10
             ("src_noise.png", 6, True, True),    # 48*6/64 = 4.5 -> Python round gives 4 (ties to even)
             ("src_tall.png", 64, False, True), ("src_tall.png", 45, True, True), ("src_tall.png", 70, True, False),
             ("src_tall.png", 100, False, True)]
    for s, sz, square, scaleup in cases:
        im, ratio, (dw, dh), (t, b, l, r), new_unpad = letterbox(srcs[s], sz, auto=not square, scaleup=scaleup, stride=32)
        n = f"lb_{s[:-4]}_{sz}_{'sq' if square else 'rect'}_{int(scaleup)}.npy"
        np.save(P(n), im)
        chw_name = ""
        if not meta["letterbox"]:   # one float CHW reference is enough (the rest is a per-value LUT)
            chw = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1]).astype(np.float32)
            chw /= np.float32(255)
            chw_name = n.replace(".npy", "_chw.npy")
            np.save(P(chw_name), chw)
        meta["letterbox"].append({"src": s, "imgsz": sz, "square": square, "scaleup": scaleup, "file": n,
                                  "chw": chw_name,
                                  "top": t, "bottom": b, "left": l, "right": r, "new_w": new_unpad[0],
                                  "new_h": new_unpad[1], "ratio": ratio[0], "dw": float(dw), "dh": float(dh)})

    # every uint8 value through the upstream float conversion (im.float(); im /= 255)
    v = np.arange(256, dtype=np.uint8).astype(np.float32)
    v /= np.float32(255)
    np.save(P("div255.npy"), v)

    # ---------------- horses.jpg: sha256 of cv2.imread and of the predict.py 640 letterbox
    hsrc = os.path.join(args.data, "horses.jpg")
    shutil.copy(hsrc, P("horses.jpg"))
    os.chmod(P("horses.jpg"), 0o644)
    him = cv2.imread(P("horses.jpg"))
    lb, ratio, (dw, dh), (t, b, l, r), new_unpad = letterbox(him, 640, auto=True, scaleup=True, stride=32)
    chw = np.ascontiguousarray(lb.transpose((2, 0, 1))[::-1]).astype(np.float32)
    chw /= np.float32(255)
    lbs = letterbox(him, 640, auto=False, scaleup=True, stride=32)[0]
    meta["horses"] = {
        "decode_shape": list(him.shape), "decode_sha256": hashlib.sha256(him.tobytes()).hexdigest(),
        "letterbox_shape": list(lb.shape), "letterbox_sha256": hashlib.sha256(lb.tobytes()).hexdigest(),
        "letterbox_sq_shape": list(lbs.shape), "letterbox_sq_sha256": hashlib.sha256(lbs.tobytes()).hexdigest(),
        "chw_sha256": hashlib.sha256(chw.tobytes()).hexdigest(),
        "top": t, "bottom": b, "left": l, "right": r, "new_w": new_unpad[0], "new_h": new_unpad[1],
    }
    # val.py load_image: long side to 640 with INTER_AREA when shrinking (int() truncation)
    h0, w0 = him.shape[:2]
    rr = 640 / max(h0, w0)
    va = cv2.resize(him, (int(w0 * rr), int(h0 * rr)), interpolation=cv2.INTER_AREA if rr < 1 else cv2.INTER_LINEAR)
    meta["horses"]["val_resize_shape"] = list(va.shape)
    meta["horses"]["val_resize_sha256"] = hashlib.sha256(va.tobytes()).hexdigest()
    hs = cv2.resize(him, (w0 // 3, h0 // 3), interpolation=cv2.INTER_AREA)
    meta["horses"]["area_third_shape"] = list(hs.shape)
    meta["horses"]["area_third_sha256"] = hashlib.sha256(hs.tobytes()).hexdigest()

    with open(P("meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    # the same content as whitespace-separated lines, for the C++ test
    with open(P("cases.txt"), "w") as f:
        for n in meta["decode"]:
            f.write(f"decode {n} {n}.npy\n")
        for s_, nw, nh, n in meta["resize_linear"]:
            f.write(f"linear {s_} {nw} {nh} {n}\n")
        for s_, nw, nh, n in meta["resize_area"]:
            f.write(f"area {s_} {nw} {nh} {n}\n")
        for c in meta["letterbox"]:
            f.write(f"letterbox {c['src']} {c['imgsz']} {int(c['square'])} {int(c['scaleup'])} {c['file']} "
                    f"{c['chw'] or '-'} {c['top']} {c['bottom']} {c['left']} {c['right']} {c['new_w']} "
                    f"{c['new_h']} {c['ratio']!r} {c['dw']!r} {c['dh']!r}\n")
        for n in meta["errors"]:
            f.write(f"error {n}\n")
        hz = meta["horses"]
        for k in ["decode", "letterbox", "letterbox_sq", "val_resize", "area_third"]:
            sh = hz[k + "_shape"]
            f.write(f"horses_{k} {sh[0]} {sh[1]} {sh[2]} {hz[k + '_sha256']}\n")
        f.write(f"horses_chw {hz['chw_sha256']}\n")
        f.write(f"horses_letterbox_pad {hz['top']} {hz['bottom']} {hz['left']} {hz['right']} {hz['new_w']} {hz['new_h']}\n")
    total = sum(os.path.getsize(P(n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
