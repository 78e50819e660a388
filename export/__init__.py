"""Export of trained segnet-tf models: SavedModel, and TFLite with unpooling lowered to builtin ops.

``export.lowering`` holds the builtin-op formulation of argmax pooling/unpooling (the reference
layers are in ``segnet_tf.layers``); ``export.exporter`` writes and verifies every artifact.
"""

from export.exporter import FORMATS, TARGETS, ExportError, ExportOptions, export_model

__all__ = ["FORMATS", "TARGETS", "ExportError", "ExportOptions", "export_model"]
