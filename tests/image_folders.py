"""Generated image folders whose content is known: coloured shapes on a dark background.

Each image shows one filled shape (square or disc) in red, green or blue, on the left or
the right half. Images are 40 x 48 (not square) so that the centre crop is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}
ATTRIBUTES = ("Red", "Green", "Blue", "Left", "Square")
WIDTH, HEIGHT = 40, 48


def shape_image(colour: str, left: bool, square: bool, rng: np.random.Generator) -> Image.Image:
    """One RGB image, ``WIDTH`` x ``HEIGHT``, with a little noise in the background."""
    pixels = rng.integers(0, 40, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    cx = (WIDTH // 4 if left else 3 * WIDTH // 4) + int(rng.integers(-2, 3))
    cy = HEIGHT // 2 + int(rng.integers(-3, 4))
    radius = int(rng.integers(6, 9))
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    if square:
        inside = (abs(xs - cx) <= radius) & (abs(ys - cy) <= radius)
    else:
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2
    pixels[inside] = COLOURS[colour]
    return Image.fromarray(pixels, "RGB")


def draw_shapes(n: int, seed: int = 0):
    """``n`` (image, colour, left, square) tuples."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        colour = tuple(COLOURS)[i % 3]
        left, square = bool(rng.integers(2)), bool(rng.integers(2))
        out.append((shape_image(colour, left, square, rng), colour, left, square))
    return out


def celeba_folder(root: Path, n: int = 300, seed: int = 0, partition: bool = True) -> dict:
    """A folder laid out like CelebA: ``img_align_celeba/NNNNNN.jpg`` (every third one a
    PNG), ``list_attr_celeba.txt`` and, if asked, ``list_eval_partition.txt`` (the first
    80 % train, the next 10 % valid, the rest test). Returns the truth: names, attributes
    ``[n, 5]`` bool and partition ``[n]``."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    names, rows = [], []
    for i, (image, colour, left, square) in enumerate(draw_shapes(n, seed)):
        name = f"{i + 1:06d}." + ("png" if i % 3 == 2 else "jpg")
        image.save(images / name, quality=95)
        names.append(name)
        rows.append([colour == "red", colour == "green", colour == "blue", left, square])
    split = np.where(np.arange(n) < 0.8 * n, 0, np.where(np.arange(n) < 0.9 * n, 1, 2))
    lines = [str(n), " ".join(ATTRIBUTES)]
    lines += [f"{name} " + " ".join(" 1" if v else "-1" for v in row) for name, row in zip(names, rows)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        (root / "list_eval_partition.txt").write_text("".join(f"{nm} {s}\n" for nm, s in zip(names, split)))
    return {"names": names, "attributes": np.array(rows, dtype=bool), "partition": split}


def class_folder(root: Path, n: int = 90, seed: int = 0) -> list[tuple[str, str]]:
    """Class sub-folders ``red/``, ``green/``, ``blue/`` of PNGs; returns (relative name, colour)."""
    out = []
    for i, (image, colour, _, _) in enumerate(draw_shapes(n, seed)):
        (root / colour).mkdir(parents=True, exist_ok=True)
        name = f"{colour}/img{i:04d}.png"
        image.save(root / name)
        out.append((name, colour))
    return out


def red_channel_along_red_vector(run, alphas=(-2, -1, 0, 1, 2)):
    """For a reopened run on a shapes folder: the mean red channel of decoded test images
    that are not red, at code + alpha x ('Red' vector) for each alpha -> ``[len(alphas)]``."""
    import torch

    from pyro_vae.plots import apply_attribute, attribute_vector

    test = run.dataset().test
    test = test.head(len(test))
    with torch.no_grad():
        codes = run.guide.encode(test.images)[0]
        red = test.attributes[:, ATTRIBUTES.index("Red")]
        vector = attribute_vector(codes, red)
        decoded = torch.stack([run.model.decode_mean(apply_attribute(c, vector, alphas)) for c in codes[~red]])
    return decoded[:, :, 0].mean((0, -1, -2))
