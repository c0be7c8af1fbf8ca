"""rerankd: a gRPC rerank service in front of an embedded cross-encoder and hosted rerank providers."""

__version__ = "0.1.0"
