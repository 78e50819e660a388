"""What a run writes for people to look at: TensorBoard logs through
``keras.callbacks.TensorBoard`` (``tensorboard --logdir RUN/tensorboard``) and, when training
ends, a picture of the loss and mIoU curves of the whole run (its history, resumed epochs
included; :class:`segnet_tf.runs.RunFolder` names the files). Both need the ``viz`` extra;
without it training runs and says once what it skips.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import keras

from segnet_tf.runs import RunFolder, read_history

LOGGER = logging.getLogger(__name__)


class ResultsPlot(keras.callbacks.Callback):
    """Draws the run's curves (:attr:`segnet_tf.runs.RunFolder.results`) from its history at the
    end of training."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)

    def on_train_end(self, logs: dict | None = None) -> None:
        from segnet_tf.plots import training_curves

        folder = RunFolder(self.run_dir)
        history = read_history(folder.history)
        if history.get("loss"):
            training_curves(history, folder.results, title=folder.path.name)


def run_log_callbacks(run_dir: Path) -> list[keras.callbacks.Callback]:
    """The chief's TensorBoard and curve-picture callbacks, those whose packages are here."""
    run_dir = Path(run_dir)
    found = []
    if importlib.util.find_spec("tensorboard") is not None:
        found.append(
            keras.callbacks.TensorBoard(
                str(RunFolder(run_dir).tensorboard), write_graph=False, profile_batch=0
            )
        )
    if importlib.util.find_spec("matplotlib") is not None:
        found.append(ResultsPlot(run_dir))
    if len(found) < 2:
        LOGGER.warning(
            f"no TensorBoard logs or {RunFolder.RESULTS} without tensorboard and matplotlib: "
            "pip install 'segnet-tf[viz]'"
        )
    return found
