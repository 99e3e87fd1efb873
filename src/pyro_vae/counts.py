"""What the library takes as a count (of images, draws, epochs, pixels...) from Python."""

from __future__ import annotations

import numbers


def is_whole_number(value) -> bool:
    """True for a whole number: a Python ``int`` or a NumPy integer (``np.int64(500)``, what
    ``len`` of an array, ``np.arange`` or a NumPy computation gives), not ``True``/``False``
    (which would read as 1 and 0) nor a float (``4.0``) nor a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
