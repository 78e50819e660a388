"""The camera loop end to end: headless runs on a clip and an image folder, summary, errors."""

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_demo import camera
from edge_demo.render import colour_lut
from edge_demo.sources import LiveSource, open_source

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_demo(*argv) -> dict:
    return camera.run(camera.build_parser().parse_args([str(a) for a in argv]))


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_headless_video_to_video(edge_models, clip, tmp_path, kind):
    out = tmp_path / "out.mp4"
    summary = run_demo(
        "--model", edge_models[kind], "--source", clip, "--headless", "--output", out,
        "--json", tmp_path / "summary.json",
    )  # fmt: skip
    frames = read_video(out)
    assert len(frames) == 12
    assert {f.shape for f in frames} == {(120, 160, 3)}
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)  # the clip's
    assert summary["frames"] == 12
    assert summary["precision"] == {"float": "float32", "int8": "int8"}[kind]
    assert summary["stopped_by"] == "end of source" and summary["dropped_frames"] == 0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_summary_numbers_are_sane(edge_models, clip):
    summary = run_demo("--model", edge_models["int8"], "--source", clip, "--headless")
    assert summary["frames"] == 12
    assert summary["fps"] == pytest.approx(summary["frames"] / summary["seconds"])
    assert list(summary["stages_ms"]) == list(camera.STAGES)
    total_p50 = 0.0
    for stats in summary["stages_ms"].values():
        assert 0 <= stats["p50"] <= stats["p95"]
        assert 0 <= stats["mean"] <= max(stats["p95"], 1e3 * summary["seconds"])
        total_p50 += stats["p50"]
    assert summary["stages_ms"]["inference"]["p50"] > 0
    assert total_p50 <= 1e3 * summary["seconds"]  # the stages fit in the run's wall time
    text = camera.format_summary(summary)
    assert text.startswith("12 frames in") and "inference" in text and "p95" in text


def test_image_folder_to_image_folder(edge_models, image_dir, tmp_path, clip_frames):
    out = tmp_path / "frames"
    summary = run_demo(
        "--model", edge_models["float"], "--source", image_dir, "--headless", "--output", f"{out}/",
        "--image-format", "png", "--alpha", "0", "--legend", "none",
    )  # fmt: skip
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"frame_{i:06d}.png" for i in range(5)]
    assert summary["frames"] == 5
    for path, frame in zip(files, clip_frames, strict=False):
        image = cv2.imread(str(path))
        assert image.shape == (120, 160, 3)
        # alpha 0 and no legend: outside the HUD (top-left) the frame is unchanged
        np.testing.assert_array_equal(image[84:, 80:], frame[84:, 80:])


def test_max_frames_and_mask_view(edge_models, clip, tmp_path):
    out = tmp_path / "frames"
    summary = run_demo(
        "--model", edge_models["int8"], "--source", clip, "--headless", "--output", out,
        "--image-format", "png", "--max-frames", 5, "--view", "mask", "--legend", "none",
    )  # fmt: skip
    assert summary["frames"] == 5 and summary["stopped_by"] == "max-frames"
    assert len(list(out.glob("*.png"))) == 5
    # below the HUD: its 5 lines cover rows 4-79 of a 120-row frame, and its width grows with the
    # FPS figure (3 digits on a fast CPU), so only its height is fixed
    mask = cv2.imread(str(out / "frame_000004.png"))[80:].reshape(-1, 3)
    palette = {
        tuple(c)
        for c in colour_lut(
            json.loads((edge_models["int8"].parent / "labels.json").read_text())["colours"]
        )
    }
    assert {tuple(p) for p in mask} <= palette  # only class colours, no frame pixels


def test_side_view_doubles_the_width(edge_models, clip, clip_frames, tmp_path):
    out = tmp_path / "side"
    run_demo(
        "--model", edge_models["int8"], "--source", clip, "--headless", "--output", out,
        "--image-format", "png", "--view", "side", "--legend", "none", "--max-frames", 3,
    )  # fmt: skip
    images = [cv2.imread(str(p)) for p in sorted(out.iterdir())]
    assert len(images) == 3 and {i.shape for i in images} == {(120, 320, 3)}
    source = open_source(str(clip))  # the decoded clip, as the demo saw it
    decoded = source.read()
    source.close()
    np.testing.assert_array_equal(images[0][84:, 80:160], decoded[84:, 80:])


def test_ignore_class_blanks_its_pixels_and_smoothing_lags_the_scene(edge_models, clip, tmp_path):
    labels = json.loads((edge_models["int8"].parent / "labels.json").read_text())
    lut = colour_lut(labels["colours"])
    assert len({tuple(c) for c in lut}) == len(lut)  # a colour names one class

    def masks(name, *options):
        out = tmp_path / name
        summary = run_demo(
            "--model", edge_models["int8"], "--source", clip, "--headless", "--output", out,
            "--image-format", "png", "--view", "mask", "--legend", "none", "--max-frames", 6,
            *options,
        )  # fmt: skip
        assert summary["frames"] == 6
        return [cv2.imread(str(p))[80:] for p in sorted(out.iterdir())]  # below the HUD

    plain = masks("plain")
    blanked = masks("ignored", "--ignore-class", "road", "--ignore-class", "0")
    smoothed = masks("smoothed", "--smooth", 4)
    ignored = [labels["class_names"].index("Road"), 0]
    for frame, blank in zip(plain, blanked, strict=True):
        classes = np.argmax((frame[:, :, None, :] == lut[None, None]).all(-1), -1)
        hit = np.isin(classes, ignored)
        assert hit.any()  # the scene has road and sky pixels (the test could fail)
        assert (blank[hit] == 0).all()  # ignored classes drawn black in the mask view
        np.testing.assert_array_equal(blank[~hit], frame[~hit])  # every other pixel as it was
    # the average starts at the first frame's scores, then lags behind the moving shapes
    np.testing.assert_array_equal(smoothed[0], plain[0])
    assert any((s != p).any() for s, p in zip(smoothed[1:], plain[1:], strict=True))


class InterruptAfter:
    """A source that delivers ``n`` frames, then raises KeyboardInterrupt like Ctrl-C would."""

    def __init__(self, source, n):
        self.source, self.n = source, n
        self.name, self.fps, self.dropped, self.end_reason = source.name, source.fps, 0, None
        self.closed = False

    def read(self):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.source.read()

    def close(self):
        self.closed = True
        self.source.close()


def test_ctrl_c_stops_cleanly_with_a_summary(edge_models, clip, tmp_path, monkeypatch):
    sources = []

    def interrupting(spec, *options):
        sources.append(InterruptAfter(open_source(spec, *options), 3))
        return sources[-1]

    monkeypatch.setattr(camera, "open_source", interrupting)
    out = tmp_path / "out.mp4"
    summary = run_demo(
        "--model", edge_models["int8"], "--source", clip, "--headless", "--output", out
    )  # fmt: skip
    assert summary["frames"] == 3 and summary["stopped_by"] == "interrupted"
    assert sources[0].closed
    assert len(read_video(out)) == 3  # the writer was closed, the file is complete


def test_lost_live_source_ends_the_loop_with_a_message(edge_models, clip, monkeypatch, caplog):
    """A camera that stops delivering and cannot be reopened: summary, and the reason logged."""
    opens = iter([str(clip)])  # the clip plays once as a live stream, then every reopen fails

    def live(spec, reconnect, *options):
        opener = lambda: cv2.VideoCapture(next(opens, "/no/such/camera.mp4"))  # noqa: E731
        return LiveSource(opener, "camera 0", reconnect, backoff_s=0.0)

    monkeypatch.setattr(camera, "open_source", live)
    summary = run_demo("--model", edge_models["int8"], "--source", "0", "--headless")
    assert summary["stopped_by"] == "camera 0: no frames after 3 reconnect attempts"
    assert "camera 0: no frames after 3 reconnect attempts; stopping" in caplog.text
    assert summary["frames"] >= 1
    assert summary["frames"] + summary["dropped_frames"] == 12  # each frame shown or dropped


def _main_error(capsys, *argv) -> str:
    assert camera.main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_inputs_give_clear_errors(edge_models, clip, tmp_path, capsys, monkeypatch):
    model = edge_models["int8"]
    err = _main_error(capsys, "--model", tmp_path / "nope.tflite", "--source", clip, "--headless")
    assert "error: --model" in err and "nope.tflite: file not found" in err
    (tmp_path / "fake.tflite").write_text("hello")
    err = _main_error(capsys, "--model", tmp_path / "fake.tflite", "--source", clip, "--headless")
    assert "not a TFLite flatbuffer" in err
    err = _main_error(capsys, "--model", model, "--source", tmp_path / "none.mp4", "--headless")
    assert "--source" in err and "none.mp4" in err
    (tmp_path / "text.mp4").write_text("not a video")
    err = _main_error(capsys, "--model", model, "--source", tmp_path / "text.mp4", "--headless")
    assert "text.mp4" in err
    labels = json.loads((model.parent / "labels.json").read_text())
    labels.update(class_names=labels["class_names"][:10], colours=labels["colours"][:10])
    labels.update(num_classes=10)
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    err = _main_error(capsys, "--model", model, "--labels", tmp_path / "labels.json", "--headless")
    assert "labels list 10 classes but model_int8.tflite outputs 11" in err
    err = _main_error(capsys, "--model", model, "--source", clip, "--ignore-class", "Unicorn")
    assert "--ignore-class Unicorn" in err and "Bicyclist" in err

    def no_gui(*args):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    err = _main_error(capsys, "--model", model, "--source", clip)  # a window is the default
    assert "cannot open a window" in err and "--headless" in err


def _python(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


# Runs the demo in a fresh interpreter, then lists the heavy packages it pulled in.
NO_TF_SCRIPT = """
import sys
from edge_demo import camera
rc = camera.main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "segnet_tf"})
print("heavy modules:", heavy)
sys.exit(rc or bool(heavy))
"""


def test_demo_imports_no_tensorflow(edge_models, clip):
    args = ["--model", edge_models["int8"], "--source", clip, "--headless", "--max-frames", 2]
    result = _python("-c", NO_TF_SCRIPT, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy modules: []" in result.stdout
    assert "2 frames in" in result.stdout
    assert "on ai_edge_litert" in result.stderr  # the runtime it picked, not tensorflow.lite


def test_script_errors_have_no_traceback(clip, tmp_path):
    script = REPO_ROOT / "edge_demo" / "camera.py"
    result = _python(script, "--model", tmp_path / "nope.tflite", "--source", clip, "--headless")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --model") and "Traceback" not in result.stderr


@pytest.mark.skipif(
    ctypes.util.find_library("edgetpu") is not None,
    reason="an Edge TPU runtime is installed here, so it cannot be missing",
)
def test_missing_edgetpu_runtime_is_one_clear_line(edge_models, clip):
    script = REPO_ROOT / "edge_demo" / "camera.py"
    args = ["--model", edge_models["int8"], "--source", clip, "--headless", "--edgetpu"]
    result = _python(script, *args)
    assert result.returncode == 1
    assert "error: Edge TPU delegate libedgetpu" in result.stderr
    assert "coral.ai" in result.stderr
    # The runtimes' Delegate.__del__ prints "Exception ignored ... Traceback" when loading fails.
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
