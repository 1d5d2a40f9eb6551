"""rnnsearch's search engine: data, models, training, engines, the service and the CLI."""

from __future__ import annotations

__version__ = "0.1.0"
