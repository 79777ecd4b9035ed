"""Built-in document connectors (files, git, http).

They register with the core like any plugin, through the ``hearth.connectors`` entry points in
``pyproject.toml``; importing this package registers nothing.
"""

from __future__ import annotations

from connectors.files import FilesConnector
from connectors.git import GitConnector
from connectors.http import HttpConnector

__all__ = ["FilesConnector", "GitConnector", "HttpConnector"]
