"""Error types whose meaning the command line maps to exit statuses."""


class BadInput(Exception):
    """The user asked for something that cannot be run: one line on stderr, exit status 2."""


class UninformativeReference(Exception):
    """The reference model gives (nearly) the same output for every input, so no check can mean anything."""


class EngineUnavailable(Exception):
    """An engine cannot run here (missing package, no GPU); the message says why."""


class StopSweep(Exception):
    """The sweep cannot go on (bad input discovered by a worker, disk full): one line, exit 2; the rows
    already written stay."""
