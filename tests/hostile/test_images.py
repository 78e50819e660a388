"""Images that lie (issue 28, item 3): a 150-byte PNG whose header declares 100000x100000 pixels,
truncated and foreign files, through the one reader (edge_demo/images.py) that data, predict,
train and the demo share."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from edge_demo import camera, images
from edge_demo.sources import ImageSource
from segnet_tf.data import DatasetError, load_image

SHIPPED = "models/segnet-lite-camvid"


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 53, 3), (300, 17, 1)])
def test_the_header_size_is_the_decoded_size(ext, shape):
    picture = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    data = encode(picture, ext)
    assert images.image_size(data, "x") == (shape[1], shape[0])
    assert images.decode(data, "x").shape == (shape[0], shape[1], 3)


def test_a_pixel_bomb_is_refused_from_its_header(hostile, monkeypatch):
    bomb = hostile.png_declaring(100_000, 100_000)
    assert len(bomb) < 150
    with pytest.raises(images.ImageTooLargeError) as refused:
        images.decode(bomb, "bomb.png")
    assert str(refused.value) == (
        "bomb.png: image is 100000x100000 pixels, above the limit of 40 megapixels "
        "(raise it with SEGNET_MAX_IMAGE_PIXELS=N)"
    )
    # the limit is the user's to raise, and applies to every format the same way
    small = encode(np.zeros((100, 100, 3), np.uint8), ".jpg")
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "9999")
    with pytest.raises(images.ImageTooLargeError, match="100x100 pixels, above the limit of 0.009"):
        images.decode(small, "s.jpg")
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "10000")
    assert images.decode(small, "s.jpg").shape == (100, 100, 3)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "lots")
    with pytest.raises(images.ImageError, match="SEGNET_MAX_IMAGE_PIXELS='lots'"):
        images.decode(small, "s.jpg")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda png, jpg: b"", "empty file"),
        (lambda png, jpg: b"GIF89a" + bytes(64), "not a PNG, JPEG, BMP, TIFF or WebP file"),
        (lambda png, jpg: b"P6\n4 4\n255\n" + bytes(48), "not a PNG"),  # PPM: not ours
        (lambda png, jpg: png[: len(png) // 2], "truncated PNG: no IEND chunk"),
        (lambda png, jpg: png[:20], "no IHDR chunk"),
        (lambda png, jpg: jpg[: len(jpg) // 2], "truncated JPEG: no end-of-image marker"),
        (lambda png, jpg: b"\xff\xd8\xff\xe0" + bytes(40), "bad marker"),
        (lambda png, jpg: b"BM" + bytes(10), "invalid BMP header"),
        (lambda png, jpg: b"II*\x00\xff\xff\xff\x7f", "no image width and length"),
        (lambda png, jpg: b"RIFF\x00\x00\x00\x00WEBPVP8 ", "invalid WebP header"),
    ],
)
def test_truncated_and_foreign_bytes_are_one_line(make, reason):
    picture = np.random.default_rng(1).integers(0, 256, (40, 60, 3), np.uint8)
    data = make(encode(picture, ".png"), encode(picture, ".jpg"))
    with pytest.raises(images.ImageError) as refused:
        images.decode(data, "in.img")
    assert str(refused.value).startswith("in.img: cannot decode image: ")
    assert reason in str(refused.value) and "\n" not in str(refused.value)


def test_predict_data_check_and_train_refuse_the_bomb_in_one_line(hostile, tmp_path, dataset):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(hostile.png_declaring(100_000, 100_000))
    with pytest.raises(DatasetError, match="bomb.png: image is 100000x100000 pixels"):
        load_image(bomb)
    result = hostile.run_cli("predict", "--model", SHIPPED, bomb, "--out", tmp_path / "p")
    hostile.assert_refused(result, "bomb.png", "100000x100000", "SEGNET_MAX_IMAGE_PIXELS")
    assert not (tmp_path / "p").exists()

    train_image = sorted((dataset / "train").glob("*.png"))[0]
    train_image.write_bytes(bomb.read_bytes())
    hostile.assert_refused(hostile.run_cli("data", "check", "--data", dataset), train_image.name)
    args = ("train", "--data", dataset, "--model", "segnet-basic", "--width", "0.125")
    args += ("--input-size", "16x16", "--epochs", "1", "--batch-size", "2")
    result = hostile.run_cli(*args, "--out", tmp_path / "run")
    hostile.assert_refused(result, train_image.name, "100000x100000")


def test_the_demo_skips_a_bomb_like_any_unreadable_image(hostile, tmp_path, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0.png").write_bytes(hostile.png_declaring(100_000, 100_000))
    hostile.write_image(folder / "1.png", (24, 32, 3))
    (folder / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    source = ImageSource(str(folder))
    with caplog.at_level(logging.WARNING):
        assert source.read().shape == (24, 32, 3)
        assert source.read() is None
    assert "0.png: image is 100000x100000 pixels" in caplog.text and "2.jpg" in caplog.text


def test_the_demo_on_a_folder_of_bombs_is_one_line(hostile, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0.png").write_bytes(hostile.png_declaring(100_000, 100_000))
    model = hostile.repo / "tests" / "edge_demo" / "fixtures" / "model_int8.tflite"
    assert camera.main(["--model", str(model), "--source", str(folder), "--headless"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no frame could be read" in err
