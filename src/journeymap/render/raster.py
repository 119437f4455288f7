"""Decode the PNGs resvg writes and compare two renders (golden-image checks).

Only what resvg produces is supported: 8-bit RGBA or RGB, non-interlaced. NumPy does the
arithmetic; no imaging library is needed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Image = npt.NDArray[np.uint8]


def decode_png(data: bytes) -> Image:
    """The image as an array of shape (height, width, 4), RGBA."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat = 8, []
    width = height = color_type = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color_type not in (2, 6) or interlace:
                raise ValueError("only 8-bit RGB(A), non-interlaced PNGs are supported")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    channels = 4 if color_type == 6 else 3
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    rows = raw.reshape(height, width * channels + 1)
    kinds = rows[:, 0].astype(np.int8)
    if (kinds > 4).any():
        raise ValueError(f"unknown PNG filter {int(kinds.max())}")
    img = _unfilter(rows[:, 1:].reshape(height, width, channels).astype(np.int32), kinds)
    if channels == 3:
        img = np.concatenate([img, np.full((height, width, 1), 255, np.uint8)], axis=2)
    return img


def _unfilter(data: npt.NDArray[np.int32], kinds: npt.NDArray[np.int8]) -> Image:
    """Undo the PNG row filters along anti-diagonals.

    Pixel (y, x) depends on its left, upper and upper-left neighbours, which all lie on
    earlier anti-diagonals, so each diagonal is one vectorised step (~W + H steps) instead of
    a Python loop over every byte.
    """
    h, w, _ = data.shape
    out = np.zeros((h + 1, w + 1, data.shape[2]), dtype=np.int32)  # padded: row/col 0 are 0
    all_rows = np.arange(h)
    for d in range(h + w - 1):
        ys = all_rows[max(0, d - w + 1) : min(h, d + 1)]
        xs = d - ys
        a = out[ys + 1, xs]  # left
        b = out[ys, xs + 1]  # up
        c = out[ys, xs]  # up-left
        k = kinds[ys][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([k == 0, k == 1, k == 2, k == 3], [0, a, b, (a + b) // 2], default=paeth)
        out[ys + 1, xs + 1] = (data[ys, xs] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


@dataclass(frozen=True)
class ImageDiff:
    """How two renders differ: share of pixels off by more than ``threshold`` (0–255)."""

    same_size: bool
    differing_share: float
    max_channel_delta: int
    mean_abs_delta: float

    def within(self, max_share: float) -> bool:
        return self.same_size and self.differing_share <= max_share


def compare_png(actual: bytes, expected: bytes, threshold: int = 24) -> ImageDiff:
    """Compare two PNGs pixel by pixel; small anti-aliasing differences stay under threshold."""
    a, b = decode_png(actual), decode_png(expected)
    if a.shape != b.shape:
        return ImageDiff(False, 1.0, 255, 255.0)
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    return ImageDiff(
        True,
        float((delta > threshold).mean()),
        int(delta.max()),
        float(delta.mean()),
    )
