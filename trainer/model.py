"""The wide-and-deep flights model ("Data Science on GCP" ch. 9/10) on Keras 3 preprocessing layers.

Wide: one-hot carrier, origin, dest and the crossed lat/lon buckets (dep_loc, arr_loc, dep_arr).
Deep: the normalised numeric features plus an embedding of every sparse feature, through the
hidden layers. Both meet in one sigmoid unit. Only built-in layers are used, so model.keras loads
anywhere Keras does, without this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainer.data import LAT_FEATURES, LON_FEATURES, NUMERIC_FEATURES, STRING_FEATURES, DataStats

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelParams:
    """The hyperparameters that shape and train the model."""

    nbuckets: int = 5
    nembeds: int = 3
    dnn_hidden_units: tuple[int, ...] = (64, 32)
    learning_rate: float = 0.001


def build_model(params: ModelParams, stats: DataStats) -> keras.Model:
    """The compiled model: named (batch, 1) inputs, one per feature; output P(on time)."""
    import keras

    inputs = {name: keras.Input(shape=(1,), name=name) for name in NUMERIC_FEATURES}
    inputs.update({n: keras.Input(shape=(1,), name=n, dtype="string") for n in STRING_FEATURES})
    sparse = _sparse_features(inputs, params.nbuckets, stats)
    wide = keras.layers.Concatenate(name="wide")(
        [keras.layers.CategoryEncoding(size, "one_hot")(ids) for ids, size in sparse.values()]
    )
    deep = _deep(inputs, sparse, params, stats)
    both = keras.layers.Concatenate(name="both")([deep, wide])
    output = keras.layers.Dense(1, activation="sigmoid", name="pred")(both)
    model = keras.Model(inputs, output, name="flights_wide_and_deep")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
        ],
    )
    return model


def bucket_boundaries(low: float, high: float, nbuckets: int) -> list[float]:
    """The nbuckets - 1 inner edges of nbuckets equal-width buckets over [low, high]."""
    return [float(x) for x in np.linspace(low, high, nbuckets + 1)[1:-1]]


def _sparse_features(inputs: dict, nbuckets: int, stats: DataStats) -> dict[str, tuple]:
    """Each sparse feature as (integer ids of shape (batch, 1), number of distinct ids)."""
    import keras

    sparse = {}
    for name in STRING_FEATURES:
        vocabulary = list(stats.vocabularies[name])
        lookup = keras.layers.StringLookup(vocabulary=vocabulary, name=f"{name}_ids")
        sparse[name] = (lookup(inputs[name]), len(vocabulary) + 1)  # + the OOV id
    lat = keras.layers.Discretization(bucket_boundaries(*stats.lat_range, nbuckets), name="lat")
    lon = keras.layers.Discretization(bucket_boundaries(*stats.lon_range, nbuckets), name="lon")
    locations = []
    for prefix, lat_name, lon_name in zip(("dep", "arr"), LAT_FEATURES, LON_FEATURES, strict=True):
        cross = keras.layers.HashedCrossing(nbuckets**2, name=f"{prefix}_loc")
        locations.append(cross((lat(inputs[lat_name]), lon(inputs[lon_name]))))
        sparse[f"{prefix}_loc"] = (locations[-1], nbuckets**2)
    dep_arr = keras.layers.HashedCrossing(nbuckets**4, name="dep_arr")(tuple(locations))
    sparse["dep_arr"] = (dep_arr, nbuckets**4)
    return sparse


def _deep(inputs: dict, sparse: dict, params: ModelParams, stats: DataStats):
    import keras

    numeric = keras.layers.Concatenate(name="numeric")([inputs[n] for n in NUMERIC_FEATURES])
    parts = [keras.layers.Normalization(mean=stats.mean, variance=stats.variance)(numeric)]
    for name, (ids, size) in sparse.items():
        embedded = keras.layers.Embedding(size, params.nembeds, name=f"embed_{name}")(ids)
        parts.append(keras.layers.Flatten()(embedded))
    deep = keras.layers.Concatenate(name="deep_inputs")(parts)
    for number, units in enumerate(params.dnn_hidden_units, start=1):
        deep = keras.layers.Dense(units, activation="relu", name=f"dnn_{number}")(deep)
    return deep
