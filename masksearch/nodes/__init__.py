"""masksearch.nodes."""
