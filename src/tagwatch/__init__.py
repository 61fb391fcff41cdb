"""tagwatch: pretrain image classifiers on hashtags, serve them with Triton, moderate a Kafka stream of posts."""

__version__ = "0.1.0"
