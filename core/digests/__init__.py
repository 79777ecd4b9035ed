"""Scheduled report digests: specs, scheduler and run records."""
