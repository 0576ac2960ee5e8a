"""How a study runs: the Backend interface, the local (Keras Tuner) and Vertex AI backends."""
