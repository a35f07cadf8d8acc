#!/usr/bin/env python3
"""Pillow's Image.resize outputs for every resampling filter, as a reference for Celer's ImageResampler.

Usage: python3 tools/reference/make_resize_fixtures.py --out tests/fixtures/multimodal/pil-resize

Writes DIR/reference.json: generated RGB images and, for each of Pillow's six filters (0 nearest, 1 lanczos,
2 bilinear, 3 bicubic, 4 box, 5 hamming), each image resized to one or more sizes. The resizes cover downscales by
integer and fractional factors (wide kernels), upscales, mixed directions, one axis only, a 1x1 source, and an image
taller than 100:1, which Pillow 12.2 and later resample vertically first (older Pillows give other bytes there).
Needs only Pillow and numpy (no transformers, no GPU). Images and outputs are base64 RGB bytes, row-major. The
committed fixture was made with Pillow main (13.0.0.dev0, built from source); Pillow 9.4 gives the same bytes except
for the tall image's resizes that change its width with lanczos, bilinear, bicubic or hamming.
"""

import argparse
import base64
import json
import os

import numpy as np
import PIL
from PIL import Image

FILTERS = [0, 1, 2, 3, 4, 5]

# (image width, image height) -> target sizes (width, height)
RESIZES = [
    ((97, 61), [(23, 17), (96, 60)]),  # fractional downscale; by one pixel
    ((13, 9), [(40, 29)]),  # upscale
    ((50, 20), [(31, 45)]),  # down in x, up in y
    ((64, 30), [(40, 30)]),  # width only
    ((30, 64), [(30, 40)]),  # height only
    ((1, 1), [(5, 3)]),
    ((160, 120), [(16, 11), (44, 33)]),  # factors 10 and 3.6: kernels of many taps
    ((2, 250), [(3, 40), (2, 60)]),  # taller than 100:1
]


def make_image(width, height, seed):
    """RGB uint8 [height, width, 3]: a gradient per channel, a hard-edged bright square, and strong noise, so that
    every filter's output differs from the others' and sums overshoot 0..255 where the kernels have negative lobes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), np.full_like(x, 128.0)], axis=-1)
    image[(x >= width // 3) & (x < 2 * width // 3) & (y >= height // 3) & (y < 2 * height // 3)] = 255
    image += rng.normal(0, 60, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    images, cases = [], []
    for index, ((width, height), sizes) in enumerate(RESIZES):
        pixels = make_image(width, height, 300 + index)
        images.append({"width": width, "height": height, "rgb": b64(pixels)})
        source = Image.fromarray(pixels, mode="RGB")
        for size in sizes:
            for resample in FILTERS:
                resized = np.asarray(source.resize(size, resample=resample))
                cases.append({"image": index, "resample": resample, "width": size[0], "height": size[1],
                              "rgb": b64(resized)})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"pillow_version": PIL.__version__, "images": images, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"make_resize_fixtures: Pillow {PIL.__version__}, {len(cases)} resizes of {len(images)} images")


if __name__ == "__main__":
    main()
