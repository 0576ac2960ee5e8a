"""The flights on-time model: a wide-and-deep Keras network speaking the Vertex trial contract."""
