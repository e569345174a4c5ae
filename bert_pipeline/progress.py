"""The progress callback stages accept: a human message and the fraction of the stage done (0.0 to 1.0).

The library only calls it; the Prefect tasks turn it into log lines and a progress artifact in the UI.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, float], None]
