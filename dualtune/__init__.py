"""dualtune: one search space, two backends (Keras Tuner, Vertex AI), MLflow for both."""

__version__ = "0.1.0"
