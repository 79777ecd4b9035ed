"""`hearth serve` (the aiohttp app every HTTP surface mounts into) and the `hearth` command line."""
