"""Declarative multi-step workflows turned into plans."""
