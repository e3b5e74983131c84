"""Tasks the CLI can run (``task=...``): thin functions over the datamodules, models and trainer."""
