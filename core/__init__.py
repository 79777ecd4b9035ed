"""Hearth's engine: every surface (chat, editor, schedules) calls into this package and nothing else."""
