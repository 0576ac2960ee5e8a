"""The local backend: Keras Tuner oracles choose, every trial is its own process."""
