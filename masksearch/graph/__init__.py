"""masksearch.graph."""
