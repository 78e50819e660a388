"""Real-time SegNet camera demo for Jetson- and Coral-class boards.

Runs on the board, where TensorFlow is not installed: everything here imports only numpy,
OpenCV and a TFLite runtime (``ai_edge_litert``, ``tflite_runtime``, or on a workstation
``tensorflow.lite``).
Run it as ``python edge_demo/camera.py --help``.
"""


class DemoError(ValueError):
    """Bad input (model, labels, source, options): the CLI prints it as one line, no traceback."""


class DemoFileNotFoundError(DemoError, FileNotFoundError):
    """A path given to the demo does not exist."""
