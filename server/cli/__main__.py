"""`python -m server.cli` runs the `hearth` command."""

from server.cli import main

if __name__ == "__main__":
    main(prog_name="hearth")
