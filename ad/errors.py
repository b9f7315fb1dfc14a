"""The error users see: every layer raises it for bad input, so it lives below all of them."""


class InputError(ValueError):
    """A user's input is not what we accept; the message says what was wrong and what is expected."""
