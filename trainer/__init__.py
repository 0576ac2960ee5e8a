"""The flights on-time model: a wide-and-deep Keras network that speaks the Vertex trial contract."""
