import numpy as np
from PIL import Image

from tagwatch.preprocess import DEFAULT_PRESET, PRESETS, Preset, preprocess_image


def test_shape_dtype_and_normalisation():
    white = Image.new("RGB", (300, 200), (255, 255, 255))
    out = preprocess_image(white)
    assert out.shape == (3, 128, 128) and out.dtype == np.float32
    expected = (1.0 - np.array(DEFAULT_PRESET.mean)) / np.array(DEFAULT_PRESET.std)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-6)


def test_transparent_pixels_become_white_not_black():
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    np.testing.assert_allclose(preprocess_image(clear), preprocess_image(Image.new("RGB", (64, 64), "white")))


def test_preset_round_trips_through_dict():
    for preset in PRESETS.values():
        assert Preset.from_dict(preset.to_dict()) == preset
    assert DEFAULT_PRESET.batch([]).shape == (0, 3, 128, 128)
