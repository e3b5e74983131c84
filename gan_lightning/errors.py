"""One exception type for every problem a user can fix by changing the command line or the files."""


class ConfigError(ValueError):
    """Bad input detected before (or instead of) training: printed as one line, exit status 2."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN/Inf): printed as one line, exit status 3; checkpoints kept."""
