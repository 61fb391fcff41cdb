"""The one preprocessing preset shared by training (eval path), evaluation, export parity checks and serving.

NumPy + Pillow only (no torch), so the moderation consumers can import it cheaply. Training augmentation lives
in the trainer but ends with the same normalisation constants. A model version records its preset (``to_dict``)
in the registry, and serving rebuilds it with ``Preset.from_dict``: one definition, never two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    """Resize the shorter side to ``resize`` (bilinear), centre-crop ``crop`` x ``crop``, scale to [0, 1],
    normalise per channel. Output: float32, CHW, RGB."""

    name: str = "tagwatch-128"
    resize: int = 146
    crop: int = 128
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preset:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def __call__(self, image: Image.Image) -> np.ndarray:
        return preprocess_image(image, self)

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """N x 3 x crop x crop float32."""
        return np.stack([preprocess_image(im, self) for im in images]) if images else np.zeros(
            (0, 3, self.crop, self.crop), dtype=np.float32
        )


PRESETS = {
    "tagwatch-128": Preset(),  # small models on CPU (the embedded default)
    "tagwatch-224": Preset(name="tagwatch-224", resize=256, crop=224),  # cluster models (ResNeXt etc.)
}
DEFAULT_PRESET = PRESETS["tagwatch-128"]


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white: transparent SVG renders and palette images must not turn black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB")


def preprocess_image(image: Image.Image, preset: Preset = DEFAULT_PRESET) -> np.ndarray:
    image = to_rgb(image)
    width, height = image.size
    scale = preset.resize / min(width, height)
    new_size = (max(preset.crop, round(width * scale)), max(preset.crop, round(height * scale)))
    image = image.resize(new_size, Image.BILINEAR)
    left = (new_size[0] - preset.crop) // 2
    top = (new_size[1] - preset.crop) // 2
    image = image.crop((left, top, left + preset.crop, top + preset.crop))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(preset.mean, dtype=np.float32)) / np.asarray(preset.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
