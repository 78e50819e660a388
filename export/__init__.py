"""Export of trained segnet-tf models: SavedModel, and TFLite and ONNX with unpooling lowered to
builtin ops.

Installed as ``segnet_tf.export`` from the repository's ``export/`` folder. ``lowering`` swaps the
builtin-op twins of the argmax layers (both in :mod:`segnet_tf.layers`) into a trained network;
``exporter`` writes and verifies every artifact.
"""

from segnet_tf.export.exporter import FORMATS, TARGETS, ExportError, ExportOptions, export_model

__all__ = ["FORMATS", "TARGETS", "ExportError", "ExportOptions", "export_model"]
