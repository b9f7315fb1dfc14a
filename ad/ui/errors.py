"""User errors in the app: one clear message on the page and one line in the server's log."""

import functools
import inspect
import logging
import os
import re
import tempfile

import gradio as gr

from ad.errors import InputError

LOG = logging.getLogger("ad.app")


def user_errors(function):
    """Show a user's mistake (an InputError) as one message in the UI, with no server path in it,
    and log it as one line without a traceback; any other exception is a fault, and Gradio prints
    its traceback as usual."""
    def refuse(error):
        message = public_message(str(error))
        LOG.warning("refused in %s: %s", function.__name__, message)
        return gr.Error(message, title="Cannot use this input", print_exception=False)

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except InputError as e:
                raise refuse(e) from None
        return generator

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as e:
            raise refuse(e) from None
    return wrapper


def public_message(message):
    """Uploads live in server folders (/tmp/gradio/<hash>/name.png): a message names the file only."""
    for folder in {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()}:
        message = re.sub(re.escape(folder.rstrip("/")) + r"/(?:[^\s'\"]*/)?([^/\s'\":]+)", r"\1", message)
    return message
