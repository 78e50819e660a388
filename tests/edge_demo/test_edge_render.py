"""Drawing for the edge demo: colours, views, ignored classes, legend and HUD panels."""

import numpy as np
import pytest

from edge_demo.render import (
    PANEL_OPACITY,
    Renderer,
    colour_lut,
    draw_text_panel,
    font_scale,
    legend_sprite,
    paste,
)

NAMES = ("sky", "road", "car")
COLOURS = ((128, 128, 128), (128, 64, 128), (64, 0, 128))  # RGB
CLASSES = np.array([[0, 1], [2, 1]], np.uint8)  # a 2x2 model output, drawn on a 4x4 frame


def _frame(value=100):
    return np.full((4, 4, 3), value, np.uint8)


def _blocks(small):
    """Nearest-neighbour 2x upscale, the way the demo scales class maps to the frame."""
    return small.repeat(2, axis=0).repeat(2, axis=1)


def test_colour_lut_is_bgr_with_ignored_classes_black():
    lut = colour_lut(COLOURS, ignored=[2])
    np.testing.assert_array_equal(lut, [[128, 128, 128], [128, 64, 128], [0, 0, 0]])
    assert lut.dtype == np.uint8
    np.testing.assert_array_equal(colour_lut([(1, 2, 3)]), [[3, 2, 1]])


def test_mask_view_colours_each_pixel_by_its_class():
    out = Renderer(NAMES, COLOURS, view="mask", legend="none").render(_frame(), CLASSES)
    expected = np.array([c[::-1] for c in COLOURS], np.uint8)[_blocks(CLASSES)]
    np.testing.assert_array_equal(out, expected)


def test_overlay_blends_with_alpha_and_leaves_ignored_classes_untouched():
    frame = _frame(100)
    out = Renderer(NAMES, COLOURS, alpha=0.25, ignored=[1], legend="none").render(frame, CLASSES)
    full = _blocks(CLASSES)
    # sky: 0.75 * 100 + 0.25 * 128 = 107; car BGR (128, 0, 64): (107, 75, 91)
    np.testing.assert_array_equal(out[full == 0], [[107, 107, 107]] * 4)
    np.testing.assert_array_equal(out[full == 2], [[107, 75, 91]] * 4)
    np.testing.assert_array_equal(out[full == 1], frame[full == 1])  # road ignored


def test_side_view_puts_frame_and_mask_side_by_side():
    frame = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    out = Renderer(NAMES, COLOURS, view="side", legend="none").render(frame, CLASSES)
    assert out.shape == (4, 8, 3)
    np.testing.assert_array_equal(out[:, :4], frame)
    np.testing.assert_array_equal(out[:, 4:], colour_lut(COLOURS)[_blocks(CLASSES)])


def test_legend_lists_present_or_all_classes_never_ignored():
    classes = np.array([[0, 0], [2, 2]], np.uint8)
    assert Renderer(NAMES, COLOURS).shown_classes(classes) == (0, 2)
    assert Renderer(NAMES, COLOURS, ignored=[2]).shown_classes(classes) == (0,)
    assert Renderer(NAMES, COLOURS, legend="all", ignored=[1]).shown_classes(classes) == (0, 2)


def test_legend_sprite_shows_swatches_on_a_translucent_panel():
    sprite = legend_sprite(NAMES, colour_lut(COLOURS), scale=0.5, max_height=200)
    img = np.full((120, 200, 3), 200, np.uint8)
    paste(img, sprite, 10, 10)
    h, w = sprite.gain.shape[:2]
    panel = img[10 : 10 + h, 10 : 10 + w]
    for bgr in colour_lut(COLOURS):  # every swatch is drawn opaque in its class colour
        assert (panel == bgr).all(axis=-1).sum() >= 25
    assert (panel == round(200 * (1 - PANEL_OPACITY))).all(axis=-1).mean() > 0.5  # darkened
    assert (img[10 + h :] == 200).all() and (img[:10] == 200).all()  # nothing outside the panel


def test_legend_wraps_into_columns_and_crops_at_the_edge():
    one = legend_sprite(NAMES, colour_lut(COLOURS), scale=0.5, max_height=200)
    wrapped = legend_sprite(NAMES, colour_lut(COLOURS), scale=0.5, max_height=30)
    assert wrapped.gain.shape[0] < one.gain.shape[0]
    assert wrapped.gain.shape[1] > one.gain.shape[1]
    img = np.zeros((8, 8, 3), np.uint8)
    paste(img, one, 4, 4)  # larger than the image: cropped, not an error
    paste(img, one, 8, 0)  # fully outside: nothing to do


def test_text_panel_darkens_its_box_and_draws_white_text():
    img = np.full((100, 200, 3), 200, np.uint8)
    draw_text_panel(img, ["12.3 FPS", "infer 4.5 ms"], 5, 5, scale=0.5)
    box = img[5:50, 5:80]
    assert (box == 255).all(axis=-1).any()  # white text
    assert (box == 80).all(axis=-1).mean() > 0.5  # 200 * (1 - 0.6)
    assert (img[60:] == 200).all()


@pytest.mark.parametrize(("height", "scale"), [(120, 0.35), (600, 1.0), (720, 1.2), (2160, 1.6)])
def test_font_scale_follows_frame_height_within_bounds(height, scale):
    assert font_scale(height) == pytest.approx(scale)
