"""The project's error base: bad input (a file, a field, an argument) with a message that names it.

Each kind also keeps the builtin base callers already catch (``SpecError`` is a ``ValueError``, ...).
The ``pac-ros`` command prints such a message as ``error: <message>`` and exits 2, without a traceback.
"""


class PacRosError(Exception):
    """Base of the project's errors; the message says what is wrong and where."""
