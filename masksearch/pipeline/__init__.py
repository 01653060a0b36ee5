"""masksearch.pipeline."""
