"""hisyngen: synthetic fully-supervised segmentation datasets from weakly-labelled histopathology."""

__version__ = "0.1.0"
