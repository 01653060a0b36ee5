"""masksearch.retrievers."""
