"""MaskSearch: retrieval-augmented mask prediction for search agents, on LangGraph."""

__version__ = "0.1.0"
