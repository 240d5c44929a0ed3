"""Image files of every kind users have, made from real photos, plus broken ones."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: scikit-image's sample images used for int8 calibration: real, varied, disjoint from the parity photos
CALIBRATION_IMAGES = (
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "color.png",
    "camera.png", "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png", "horse.png", "page.png",
    "text.png", "cell.png",
)  # fmt: skip


def write_calibration_images(root: Path) -> Path:
    """Copy the :data:`CALIBRATION_IMAGES` into ``root`` (16 real images); returns ``root``."""
    import shutil

    import skimage

    source = Path(skimage.__file__).parent / "data"
    root.mkdir(parents=True, exist_ok=True)
    for name in CALIBRATION_IMAGES:
        shutil.copy(source / name, root / name)
    return root


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def write_good_images(root: Path, photo: Image.Image) -> dict[str, Path]:
    """One file per Pillow mode the runtime must handle; returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    photo = photo.convert("RGB").resize((160, 120))
    gray = photo.convert("L")
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        files[name] = root / name
        image.save(files[name], **kwargs)

    save("rgb.jpg", photo, quality=95)
    save("gray_L.png", gray)
    save("bilevel_1.png", gray.convert("1"))
    # alpha from fully transparent (left) to opaque (right)
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, photo.width).astype(np.uint8), (photo.height, 1)))
    la = gray.copy()
    la.putalpha(alpha)
    save("gray_alpha_LA.png", la)
    rgba = photo.copy()
    rgba.putalpha(alpha)
    save("rgba.png", rgba)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    save("palette_P.png", palette)
    save("palette_transparency_P.gif", palette, transparency=0)
    save("cmyk.jpg", photo.convert("CMYK"), quality=95)
    sixteen = (np.asarray(gray, dtype=np.uint16) * 257).astype(np.uint16)
    save("gray16_I16.png", Image.fromarray(sixteen))
    save("int32_I.tif", Image.fromarray(sixteen.astype(np.int32)))
    save("float_F.tif", Image.fromarray(np.asarray(gray, dtype=np.float32) / 255.0))
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    files["animated.gif"] = root / "animated.gif"
    frames[0].save(files["animated.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("webp_image.webp", photo, quality=95)
    save("no_extension", photo, format="PNG")  # an image by content, not by name
    return files


def write_bad_images(root: Path, photo: Image.Image) -> dict[str, Path]:
    """Truncated, empty, non-image and bomb files; returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    files = {name: root / name for name in ("truncated.jpg", "empty.jpg", "not_an_image.png", "bomb.png")}
    full = root / "full.tmp"
    photo.convert("RGB").save(full, format="JPEG", quality=95)
    files["truncated.jpg"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    files["empty.jpg"].write_bytes(b"")
    files["not_an_image.png"].write_text("this is a text file with an image's name\n")
    files["bomb.png"].write_bytes(forged_png(50_000, 50_000))
    return files
