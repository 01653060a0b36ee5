"""masksearch.corpus."""
