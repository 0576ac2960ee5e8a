"""How a study runs: the Backend interface and its local (Keras Tuner) and Vertex AI implementations."""
