"""masksearch.models."""
