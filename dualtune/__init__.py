"""dualtune: one search space, two backends (Keras Tuner locally, Vertex AI at scale), MLflow for both."""

__version__ = "0.1.0"
