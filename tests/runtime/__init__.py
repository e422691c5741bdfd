"""Tests and image building for the injected runtime (``levrt.runtime`` + the bundle)."""
