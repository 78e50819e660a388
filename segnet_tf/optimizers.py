"""AdamW with a learning-rate multiplier per group of layers: a pretrained encoder learns slower
than the decoder trained from scratch (the usual fine-tuning recipe; the paper's Caffe SegNet sets
``lr_mult`` per layer the same way).

Registered so that a run's last checkpoint (model and optimizer state) reloads under safe loading.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="segnet_tf")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose step for a variable of a layer named ``PREFIX...`` (any layer on the variable's
    path) is scaled by ``lr_multipliers[PREFIX]``; the longest matching prefix wins, other
    variables step at the base rate.

    Only Adam's step is scaled; the decoupled weight decay keeps the base rate (its pull per step,
    ``lr * weight_decay``, is some 1e-7 of a weight and no concern of a pretrained layer).
    """

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self._scales: dict = {}

    def multiplier(self, path: str) -> float:
        layers = path.split("/")[:-1]
        matches = [p for p in self.lr_multipliers if any(n.startswith(p) for n in layers)]
        return self.lr_multipliers[max(matches, key=len)] if matches else 1.0

    def build(self, var_list) -> None:
        super().build(var_list)
        # keyed like the update step sees them (TensorFlow hands it tf.Variables, not Keras's)
        self._scales = {
            self._var_key(v): m for v in var_list if (m := self.multiplier(v.path)) != 1.0
        }

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales.get(self._var_key(variable))
        if scale is not None:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), scale)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}
