"""segnet-tf: SegNet semantic segmentation in TensorFlow/Keras 3, with int8 TFLite export."""

from segnet_tf.quiet import import_tensorflow

import_tensorflow()  # first: TensorFlow's log settings only count before it loads (see quiet.py)

from segnet_tf import layers, losses  # noqa: E402  (registered for keras.models.load_model)
from segnet_tf.models import build_model, list_models, load_model  # noqa: E402

__all__ = ["build_model", "layers", "list_models", "load_model", "losses"]
__version__ = "0.1.0"
