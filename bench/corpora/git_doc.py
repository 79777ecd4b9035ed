"""The git manual eval corpus: Debian's git-doc package (205 HTML pages) and 48 labelled questions.

``ensure_git_doc()`` returns the HTML directory, installing the package with apt-get when it is
missing and this process is root; None when it cannot be had. Index it with a files source::

    sources: [{name: git, type: files, path: /usr/share/doc/git-doc, include: ["*.html"]}]
    hearth eval retrieval bench/corpora/git-doc.jsonl
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PACKAGE = "git-doc"
ROOT = Path("/usr/share/doc/git-doc")
EVAL = Path(__file__).with_name("git-doc.jsonl")
SOURCE = "git"


def ensure_git_doc() -> Path | None:
    """The git-doc HTML directory (apt-get installed when missing and root), or None."""
    if (ROOT / "git-reset.html").is_file():
        return ROOT
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]
    for cmd in (install, ["apt-get", "update", "-q"], install):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if cmd is install and done.returncode == 0 and (ROOT / "git-reset.html").is_file():
            return ROOT
    return None
