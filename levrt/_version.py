"""The levrt version, in a module of its own so the payload header can name it cheaply.

Keep equal to ``project.version`` in pyproject.toml (a unit test checks).
"""

__version__ = "2.0.0a1"
