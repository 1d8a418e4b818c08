"""The package's one exception type: every failure a user can act on is a TransformerError."""


class TransformerError(Exception):
    """A clear, one-line reason why a model could not be loaded or an input could not be run."""
