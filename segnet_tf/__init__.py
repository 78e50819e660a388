"""segnet-tf: SegNet semantic segmentation in TensorFlow/Keras 3, with int8 TFLite export."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from segnet_tf import layers  # noqa: E402  (registers the custom layers for load_model)
from segnet_tf.models import build_model, list_models, load_model  # noqa: E402

__all__ = ["build_model", "layers", "list_models", "load_model"]
__version__ = "0.1.0"
