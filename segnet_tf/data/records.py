"""Packed datasets: a few TFRecord shards per split plus a ``dataset.json`` manifest.

``segnet-tf data pack`` turns thousands of PNGs into a handful of files that are quick to copy to a
GPU machine. Each record is a ``tf.train.Example`` with ``image/encoded`` (JPEG, or PNG when
``quality=None``), ``label/encoded`` (PNG of class ids), ``image/name``, ``image/height`` and
``image/width``. JPEG is lossy for the images only: at quality 95, without chroma subsampling
(colour edges matter for segmentation), a CamVid frame shrinks several-fold and its pixels change
by about one grey level (the bound test_data_records holds). Labels are always stored losslessly.

Reading does not stream shards through ``TFRecordDataset``: :func:`open_packed` indexes the byte
offset of every record, and each :class:`RecordSample` decodes its own record with the same OpenCV
readers as files, so packed data behaves exactly like a folder (random access, ``validate``,
``make_dataset``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segnet_tf.data.config import DatasetConfig
from segnet_tf.data.io import DatasetError, DatasetFileNotFoundError, check_same_size, decode_image
from segnet_tf.data.io import decode_label as _decode_label
from segnet_tf.data.samples import Dataset
from segnet_tf.progress import progress

MANIFEST = "dataset.json"
PACKED_FORMAT = "segnet-tf-records/1"
_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the data


@dataclass(frozen=True)
class RecordSample:
    """One record of a packed shard, read by byte offset."""

    shard: Path
    offset: int
    name: str

    def _features(self) -> dict:
        from tensorflow.core.example.example_pb2 import Example  # protobuf class, no graph

        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            (length,) = struct.unpack("<Q", f.read(8))
            f.seek(self.offset + _HEADER)
            data = f.read(length)
        if len(data) != length:
            raise DatasetError(f"{self.shard}: record {self.name!r} is truncated")
        return Example.FromString(data).features.feature

    def _source(self) -> str:
        return f"{self.shard} (record {self.name!r})"

    def load(self, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
        feature = self._features()
        image = decode_image(feature["image/encoded"].bytes_list.value[0], self._source())
        label = _decode_label(feature["label/encoded"].bytes_list.value[0], config, self._source())
        check_same_size(image, label, self._source(), self._source())
        return image, label

    def load_label(self, config: DatasetConfig) -> np.ndarray:
        data = self._features()["label/encoded"].bytes_list.value[0]
        return _decode_label(data, config, self._source())


def pack_dataset(
    dataset: Dataset,
    out_dir: str | Path,
    shards: int | None = None,
    quality: int | None = 95,
    splits: Sequence[str] | None = None,
) -> Path:
    """Write ``dataset`` (all splits unless ``splits``) as TFRecord shards into ``out_dir``.

    ``shards`` is the number of files per split (default: one per 500 samples). ``quality`` is the
    JPEG quality of the images; None stores them as lossless PNG. Returns ``out_dir``, which
    :func:`segnet_tf.data.open_dataset` and :func:`segnet_tf.data.make_dataset` read back.
    """
    import tensorflow as tf

    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100 (or None for PNG), got {quality}")
    if shards is not None and shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": PACKED_FORMAT,
        "image_encoding": "png" if quality is None else f"jpeg (quality {quality})",
        "config": dataset.config.mapped().to_dict(),  # the records hold class ids
        "splits": {},
    }
    for split in splits or list(dataset.splits):
        samples = dataset.split(split)
        n_shards = min(shards or math.ceil(len(samples) / 500), len(samples))
        files = []
        for k in range(n_shards):
            chunk = samples[k * len(samples) // n_shards : (k + 1) * len(samples) // n_shards]
            name = f"{split}-{k:05d}-of-{n_shards:05d}.tfrecord"
            with tf.io.TFRecordWriter(str(out / name)) as writer:
                for sample in progress(chunk, f"pack {name}"):
                    writer.write(_example(sample, dataset.config, quality))
            files.append({"file": name, "count": len(chunk)})
        manifest["splits"][split] = {"shards": files, "names": [s.name for s in samples]}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def _example(sample, config: DatasetConfig, quality: int | None) -> bytes:
    import tensorflow as tf

    image, label = sample.load(config)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if quality is None:
        ok, image_bytes = cv2.imencode(".png", bgr)
    else:
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        ]
        ok, image_bytes = cv2.imencode(".jpg", bgr, params)
    ok_label, label_bytes = cv2.imencode(".png", label)
    if not (ok and ok_label):
        raise DatasetError(f"{sample.name}: could not encode image/label for packing")

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        "image/encoded": feature(image_bytes.tobytes()),
        "label/encoded": feature(label_bytes.tobytes()),
        "image/name": feature(sample.name.encode()),
        "image/height": feature(int(image.shape[0])),
        "image/width": feature(int(image.shape[1])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString()


def open_packed(root: Path, manifest: dict, config: DatasetConfig | None = None) -> Dataset:
    """Index the shards listed in a packed ``dataset.json`` (see :func:`pack_dataset`)."""
    where = root / MANIFEST
    if manifest.get("format") != PACKED_FORMAT:
        raise DatasetError(
            f"{where}: packed format {manifest.get('format')!r} is not supported "
            f"(expected {PACKED_FORMAT!r}); re-pack with this version of segnet-tf"
        )
    try:
        config = config or DatasetConfig.from_dict(manifest["config"])
        splits = {}
        for split, entry in manifest["splits"].items():
            samples: list[RecordSample] = []
            names = entry["names"]
            for shard in entry["shards"]:
                offsets = _record_offsets(root / shard["file"])
                if len(offsets) != shard["count"]:
                    raise DatasetError(
                        f"{root / shard['file']}: holds {len(offsets)} records, the manifest "
                        f"says {shard['count']} (incomplete copy?)"
                    )
                samples += [
                    RecordSample(root / shard["file"], off, names[len(samples) + i])
                    for i, off in enumerate(offsets)
                ]
            splits[split] = tuple(samples)
    except (KeyError, TypeError, IndexError) as e:
        raise DatasetError(f"{where}: malformed packed manifest ({e!r})") from e
    return Dataset(root=root, config=config, splits=splits)


def _record_offsets(path: Path) -> list[int]:
    """Byte offsets of the records in a TFRecord file, from the length headers alone."""
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: packed shard not found")
    offsets, size, pos = [], path.stat().st_size, 0
    with open(path, "rb") as f:
        while pos < size:
            header = f.read(_HEADER)
            if len(header) < _HEADER:
                raise DatasetError(f"{path}: truncated record header at byte {pos}")
            (length,) = struct.unpack("<Q", header[:8])
            offsets.append(pos)
            pos += _HEADER + length + _FOOTER
            if pos > size:
                raise DatasetError(f"{path}: truncated record at byte {offsets[-1]}")
            f.seek(pos)
    return offsets
