"""Engines adapt a Space to a search library. They never write to storage themselves."""
