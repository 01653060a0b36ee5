"""masksearch.masking."""
