"""The games: one LightningModule per game, each running its own D/G/C steps (manual optimization)."""
