"""Training runs end to end: run files, resume after an interrupt, atomic checkpoints, class
weights, and data-parallel training on two logical CPU devices."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from segnet_tf.config import TrainConfig, resolve_crop_size
from segnet_tf.data import (
    CAMVID,
    Dataset,
    DatasetConfig,
    load_image,
    synthetic_dataset,
    write_synthetic_dataset,
)
from segnet_tf.evaluation import evaluate
from segnet_tf.models import load_model
from segnet_tf.prediction import predict_images
from segnet_tf.runs import RunFolder
from segnet_tf.training import (
    atomic_save_model,
    global_dtype_policy,
    make_strategy,
    read_state,
    resolve_class_weights,
    train,
    train_val_samples,
)

REPO = Path(__file__).resolve().parents[2]
RUN_FILES = ("config.json", "best.keras", "last.keras", "history.csv", "state.json")


def scalars(log_dir: Path) -> set[tuple[str, int]]:
    """(tag, step) of every value in a TensorBoard event folder."""
    found = set()
    for path in log_dir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            found |= {(value.tag, event.step) for value in event.summary.value}
    return found


def history_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "history.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_short_synthetic_run_lowers_the_loss_and_writes_the_run(tiny_run):
    run = tiny_run.run_dir
    loss = tiny_run.history["loss"]
    assert len(loss) == 2 and loss[1] < 0.99 * loss[0]
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    train_scalars = scalars(run / "tensorboard" / "train")
    assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_learning_rate", 1)} <= train_scalars
    assert {("epoch_loss", 1), ("epoch_miou", 1)} <= scalars(run / "tensorboard" / "validation")
    assert not list(run.glob(".*tmp*")), "temporary checkpoint files left behind"
    assert (run / "results.png").stat().st_size > 10_000  # the curves (looked at by hand)
    assert history_epochs(run) == [0, 1]
    state = read_state(run)
    assert state["epoch"] == 2 and state["best_miou"] == max(tiny_run.history["val_miou"])
    assert tiny_run.best_miou == state["best_miou"] and 0 <= tiny_run.best_miou <= 1

    info = json.loads((run / "config.json").read_text())
    assert info["model"] == {
        "name": "segnet-lite",
        "input_size": [64, 96],
        "num_classes": 11,
        "width": None,
    }
    assert info["train"]["epochs"] == 2 and info["train"]["data"] is None
    assert info["dataset"]["class_names"] == list(CAMVID.class_names)
    # the default "sqrt-median": square roots of the config's own median-frequency weights
    np.testing.assert_allclose(info["class_weights"], np.sqrt(CAMVID.class_weights), rtol=1e-12)

    # best.keras is the float32 inference model: it loads without our loss and predicts logits.
    best = load_model(run / "best.keras")
    assert best.input_shape == (None, 64, 96, 3) and best.compute_dtype == "float32"
    with zipfile.ZipFile(run / "best.keras") as archive:  # no optimizer, no loss to register
        assert not json.loads(archive.read("config.json")).get("compile_config")
    assert best.predict_on_batch(np.zeros((1, 64, 96, 3), np.float32)).shape == (1, 64, 96, 11)


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt  # what Ctrl-C does, after the checkpoint callbacks ran


@pytest.mark.slow
def test_resume_after_an_interrupt_continues_at_the_next_epoch(tmp_path):
    # Mixed precision (the GPU default) is the harder case: the loss-scaling optimizer state
    # must come back too.
    out = tmp_path / "run"
    config = TrainConfig(
        out=str(out),
        input_size=(32, 48),
        epochs=2,
        batch_size=4,
        synthetic_train=8,
        synthetic_val=4,
        precision="mixed_float16",
    )
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[StopAfterFirstEpoch()], verbose=0)
    assert read_state(out)["epoch"] == 1 and (out / "last.keras").is_file()
    assert history_epochs(out) == [0]
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        train(config, verbose=0)
    # A kill between the CSV row and the checkpoint leaves a row of an unfinished epoch.
    with (out / "history.csv").open("a") as f:
        f.write("1,9.9,0.1,9.9,0.1\n")

    result = train(TrainConfig(out=str(out), resume=True), verbose=0)
    assert result.epochs == 2 and history_epochs(out) == [0, 1]
    with global_dtype_policy("mixed_float16"):
        resumed = keras.models.load_model(out / "last.keras")
    assert type(resumed.optimizer).__name__ == "LossScaleOptimizer"
    assert int(resumed.optimizer.iterations) == 2 * 2  # 2 epochs of 8 // 4 steps: state restored
    assert load_model(out).get_layer("block1_conv1").compute_dtype == "float32"  # best: float32
    assert not list(out.glob(".*tmp*"))
    # Resuming a finished run does nothing.
    assert train(TrainConfig(out=str(out), resume=True), verbose=0).epochs == 2


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        train(TrainConfig(out=str(tmp_path / "none"), resume=True))


def test_atomic_save_keeps_the_previous_checkpoint_when_writing_fails(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "last.keras"
    atomic_save_model(model, path)
    before = path.read_bytes()

    class Crashes:
        def save(self, p):
            Path(p).write_bytes(b"half a zip")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save_model(Crashes(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.keras"]
    assert keras.models.load_model(path).input_shape == (None, 2)


@dataclass(frozen=True)
class LabelOnly:
    name: str
    label: np.ndarray

    def load_label(self, config):
        return self.label


THREE = DatasetConfig(
    name="three",
    class_names=("a", "b", "c"),
    colours=((0, 0, 0), (1, 1, 1), (2, 2, 2)),
    void_id=255,
)


def test_default_crop_is_at_most_240x320_at_the_input_scale():
    crop = lambda **kw: resolve_crop_size(TrainConfig(out="r", data="d", **kw))  # noqa: E731
    assert crop() == (240, 320)  # the paper's 360x480 frames
    assert crop(input_size=(720, 960)) == (240, 320)
    assert crop(input_size=(180, 480)) == (180, 320)  # cropped in width only
    assert crop(input_size=(180, 240)) is None  # smaller than the crop: whole images
    assert crop(augment="none") is None  # no random crops without augmentation
    assert crop(crop_size=(120, 160)) == (120, 160)
    assert resolve_crop_size(TrainConfig(out="r")) is None  # synthetic 96x128


def test_class_weights(tmp_path):
    # Median frequency: class 0 has 4 of 8 pixels (both images), class 1 1 of 4, class 2 3 of 4;
    # median 0.5 -> weights 0.5/0.5, 0.5/0.25, 0.5/0.75. Void (255) counts nowhere.
    samples = (
        LabelOnly("x", np.array([[0, 0, 0, 1]])),
        LabelOnly("y", np.array([[0, 2, 2, 2]])),
        LabelOnly("z", np.array([[255, 255]])),
    )
    dataset = Dataset(root=None, config=THREE, splits={"train": samples})
    np.testing.assert_allclose(resolve_class_weights("median", dataset), [1.0, 2.0, 2 / 3])
    assert resolve_class_weights("none", dataset) == (1.0, 1.0, 1.0)
    camvid = synthetic_dataset(train=1, val=0)
    assert resolve_class_weights("median", camvid) == CAMVID.class_weights

    (tmp_path / "w.json").write_text("[0.5, 1, 2]")
    (tmp_path / "w.txt").write_text("0.5\n1\n2\n")
    (tmp_path / "short.txt").write_text("1\n2\n")
    for name in ("w.json", "w.txt"):
        assert resolve_class_weights(str(tmp_path / name), dataset) == (0.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="expected 3 finite weights"):
        resolve_class_weights(str(tmp_path / "short.txt"), dataset)
    np.testing.assert_allclose(
        resolve_class_weights("sqrt-median", dataset), [1.0, 2**0.5, (2 / 3) ** 0.5]
    )
    with pytest.raises(FileNotFoundError, match="neither 'median', 'sqrt-median', 'none'"):
        resolve_class_weights("mean", dataset)


class FirstKernel(keras.callbacks.Callback):
    """Keeps the first conv kernel as fit starts: what the run was initialised with."""

    def on_train_begin(self, logs=None):
        self.kernel = self.model.get_layer("block1_conv1").kernel.numpy()


@pytest.mark.slow
def test_init_weights_start_a_run_from_a_trained_model(tiny_run, tmp_path):
    donor = load_model(tiny_run.best_path)
    seen = FirstKernel()
    run = TrainConfig(
        out=str(tmp_path / "ft"),
        input_size=(64, 96),
        epochs=1,
        batch_size=4,
        synthetic_train=8,
        synthetic_val=4,
        init_weights=str(tiny_run.run_dir),  # a run folder: its best.keras
        seed=5,  # without init, another seed draws other weights
    )
    train(run, callbacks=[seen], verbose=0)
    np.testing.assert_array_equal(seen.kernel, donor.get_layer("block1_conv1").kernel.numpy())
    stored = json.loads((tmp_path / "ft" / "config.json").read_text())["train"]
    donor_dir = Path(tiny_run.run_dir).resolve()
    # stored relative to the run (no machine's paths), read back where it is
    assert stored["init_weights"] == os.path.relpath(donor_dir, (tmp_path / "ft").resolve())
    assert stored["out"] == "."
    assert RunFolder(tmp_path / "ft").info()["train"]["init_weights"] == str(donor_dir)
    with pytest.raises(FileNotFoundError, match="--init-weights .*no such model"):
        train(replace(run, out=str(tmp_path / "x"), init_weights=str(tmp_path / "nope")))


def test_validation_is_held_out_of_train_when_there_is_no_val_split():
    dataset = synthetic_dataset(train=20, val=0)
    train_samples, val_samples = train_val_samples(dataset, seed=0)
    assert len(train_samples) == 18 and len(val_samples) == 2
    assert not {s.name for s in train_samples} & {s.name for s in val_samples}
    assert val_samples == train_val_samples(dataset, seed=0)[1]  # seeded


def test_strategies_on_a_cpu_machine():
    assert make_strategy("auto") is tf.distribute.get_strategy()
    assert make_strategy("none") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="--strategy 'ring'"):
        make_strategy("ring")


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from segnet_tf.config import TrainConfig
    from segnet_tf.training import train
    config = TrainConfig(out=sys.argv[1], model="segnet-basic", width=0.25, input_size=(32, 48),
                         epochs=1, batch_size=4, synthetic_train=8, synthetic_val=4,
                         strategy="mirrored")
    result = train(config, verbose=0)
    print(json.dumps({"epochs": result.epochs, "loss": result.history["loss"]}))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpu_devices(tmp_path):
    # Logical devices must be configured before TensorFlow initialises: a fresh process.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["epochs"] == 1 and np.isfinite(result["loss"][0])
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["strategy"] == {"name": "MirroredStrategy", "replicas": 2}
    assert load_model(tmp_path / "run").output_shape == (None, 32, 48, 11)


@pytest.mark.slow
def test_short_camvid_run_then_evaluate_and_predict(camvid, tmp_path):
    # 8 train and 4 val pairs of the real CamVid, listed (not copied) in a dataset folder.
    subset = tmp_path / "camvid8"
    subset.mkdir()
    for split, n in (("train", 8), ("val", 4)):
        lines = (camvid / f"{split}.txt").read_text().split("\n")[:n]
        pairs = [" ".join(str(camvid / p) for p in line.split()) for line in lines]
        (subset / f"{split}.txt").write_text("\n".join(pairs) + "\n")
    config = TrainConfig(
        out=str(tmp_path / "run"),
        data=str(subset),
        input_size=(96, 128),
        epochs=3,
        batch_size=2,
        lr=3e-3,
    )
    result = train(config, verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert RunFolder(result.run_dir).info()["train"]["data"] == str(subset)

    scores = evaluate(result.best_path, subset, split="val")
    assert scores["num_images"] == 4 and scores["input_size"] == [96, 128]
    assert scores["miou"] == pytest.approx(result.best_miou, abs=1e-6)
    for key in ("global_accuracy", "class_accuracy", "miou", "bf_score"):
        assert 0.0 <= scores[key] <= 1.0, key

    frame = camvid / (camvid / "val.txt").read_text().split()[0]
    (pred,) = predict_images(result.best_path, [frame], tmp_path / "pred")
    assert load_image(pred.mask).shape == (360, 480, 3)
    assert load_image(pred.overlay).shape == (360, 480, 3)


@pytest.mark.slow
def test_crops_train_a_free_size_model_and_save_the_fixed_size_twin(tmp_path):
    """Crops at the input scale: the trained model takes any size (so it validates on whole
    frames), best.keras is fixed at the input size for export, and dropout is in both."""
    config = TrainConfig(
        out=str(tmp_path / "crop"),
        input_size=(64, 96),
        crop_size=(32, 48),
        augment="strong",
        dropout=True,
        epochs=1,
        batch_size=4,
        synthetic_train=8,
        synthetic_val=4,
    )
    result = train(config, verbose=0)
    last, best = load_model(result.last_path), load_model(result.best_path)
    assert last.input_shape == (None, None, None, 3)
    assert best.input_shape == (None, 64, 96, 3)
    assert any("dropout" in layer.name for layer in best.layers)
    stored = json.loads((result.run_dir / "config.json").read_text())["train"]
    assert stored["crop_size"] == [32, 48] and stored["augment"] == "strong"
    assert TrainConfig.from_dict({**stored, "augment": True}).augment == "default"  # old runs


@pytest.mark.slow
def test_mixed_precision_steps_on_the_cpu_write_a_float32_best_model(tmp_path):
    # The GPU default (float16 compute, float32 variables, loss scaling) through the same code.
    data = write_synthetic_dataset(tmp_path / "data", train=4, val=4, size=(16, 16))
    config = TrainConfig(out=str(tmp_path / "run"), data=str(data), model="segnet-basic")
    config = replace(config, width=0.125, input_size=(16, 16), batch_size=4, epochs=4)
    result = train(replace(config, augment=False, lr=3e-3, precision="mixed_float16"), verbose=0)
    loss = result.history["loss"]  # one step per epoch, on the same 4 images
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.97 * loss[0], loss
    with global_dtype_policy("mixed_float16"):
        last = keras.models.load_model(result.last_path)
    assert last.get_layer("block1_conv1").compute_dtype == "float16"
    assert type(last.optimizer).__name__ == "LossScaleOptimizer"
    best = load_model(result.best_path)
    assert best.get_layer("block1_conv1").compute_dtype == "float32"
    assert {w.dtype for w in best.weights} == {"float32"}
