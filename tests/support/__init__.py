"""Helpers shared by the tests: tiny models and independent references of the original algorithms."""
