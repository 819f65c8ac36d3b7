"""shoptalk: turn an open LLM into a private assistant for one organization."""

__version__ = "0.1.0"
