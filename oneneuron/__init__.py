"""Shared foundation for every stage: errors, atomic file writes, hashing, the manifest.

Standard library only, so that the embeddable loader in `serve/` stays light.
"""
