"""Built-in document connectors; importing this package registers them with the core registry."""

from __future__ import annotations

from connectors.files import FilesConnector
from connectors.git import GitConnector
from connectors.http import HttpConnector
from core.retrieval.connectors import register

register("files", FilesConnector)
register("git", GitConnector)
register("http", HttpConnector)

__all__ = ["FilesConnector", "GitConnector", "HttpConnector"]
