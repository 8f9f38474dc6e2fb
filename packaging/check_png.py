"""Check that a screenshot is a real rendering: a PNG of the expected size that is not blank.

Standard library only, so it runs with any python3 next to the frozen app:
``python3 check_png.py SHOT.png [WIDTHxHEIGHT]``; exit status 1 with the reason otherwise.
"""

import struct
import sys
import zlib
from collections import Counter


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    stride = width * bpp
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[pos], bytearray(raw[pos + 1: pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return rows


def check(path: str, size: str | None) -> str:
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    if size and f"{width}x{height}" != size:
        raise ValueError(f"{width}x{height}, expected {size}")
    if depth != 8 or color not in (2, 6) or interlace:
        return f"{width}x{height} (depth {depth}, color type {color}: pixels not checked)"
    bpp = 3 if color == 2 else 4
    rows = _unfilter(zlib.decompress(idat), width, height, bpp)
    pixels = Counter(row[i: i + bpp] for row in rows[::4] for i in range(0, len(row), bpp * 4))
    top = pixels.most_common(1)[0][1] / sum(pixels.values())
    if len(pixels) < 32 or top > 0.97:
        raise ValueError(f"looks blank: {len(pixels)} colors, the commonest covers {top:.0%}")
    return f"{width}x{height}, {len(pixels)} colors, commonest {top:.0%}"


if __name__ == "__main__":
    try:
        print(f"{sys.argv[1]}: ok, {check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)}")
    except (OSError, ValueError, TypeError, zlib.error, struct.error) as exc:
        print(f"{sys.argv[1]}: FAIL, {exc}", file=sys.stderr)
        sys.exit(1)
