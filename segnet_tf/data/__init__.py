"""Datasets: class config, folder discovery (road-scene releases included), synthetic scenes,
tf.data pipeline, packing, stats."""

from __future__ import annotations

from segnet_tf.data.config import (
    BDD100K,
    CAMVID,
    CITYSCAPES,
    KITTI,
    SUNRGBD,
    DatasetConfig,
    load_dataset_config,
)
from segnet_tf.data.datasets import Dataset, Sample, open_dataset, save_dataset, validate
from segnet_tf.data.io import DatasetError, colorize, load_image, load_label
from segnet_tf.data.pipeline import make_dataset, unwrap_dataset_error
from segnet_tf.data.records import pack_dataset
from segnet_tf.data.stats import dataset_stats, median_frequency_weights
from segnet_tf.data.synthetic import render_scene, synthetic_dataset, write_synthetic_dataset

__all__ = [
    "BDD100K",
    "CAMVID",
    "CITYSCAPES",
    "KITTI",
    "SUNRGBD",
    "Dataset",
    "DatasetConfig",
    "DatasetError",
    "Sample",
    "colorize",
    "dataset_stats",
    "load_dataset_config",
    "load_image",
    "load_label",
    "make_dataset",
    "median_frequency_weights",
    "open_dataset",
    "pack_dataset",
    "render_scene",
    "save_dataset",
    "synthetic_dataset",
    "unwrap_dataset_error",
    "validate",
    "write_synthetic_dataset",
]
