"""masksearch.training."""
