"""The serving signature: any batch for TF Serving, batch 1 (static shapes) for the converter."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from segnet_tf.export.savedmodel import save_serving_model


def test_serving_signature_returns_the_models_scores(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 10, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    images = np.random.default_rng(0).uniform(0, 255, (2, 6, 10, 3)).astype(np.float32)

    save_serving_model(model, tmp_path / "any")
    serve = tf.saved_model.load(str(tmp_path / "any")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["image"].shape.as_list() == [None, 6, 10, 3]
    scores = serve(image=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(scores, model(images).numpy(), rtol=1e-5, atol=1e-4)

    save_serving_model(model, tmp_path / "one", batch_size=1)
    serve = tf.saved_model.load(str(tmp_path / "one")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["image"].shape.as_list() == [1, 6, 10, 3]
