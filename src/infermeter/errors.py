"""Error types whose meaning the command line maps to exit statuses, and how an error reads in one line."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line (whitespace collapsed), cut at `limit` characters: for messages that
    quote a library's error inside our own."""
    message = " ".join(str(e).split())
    text = f"{type(e).__name__}: {message}" if message else type(e).__name__
    return text[:limit] + ("..." if len(text) > limit else "")


class BadInput(Exception):
    """The user asked for something that cannot be run: one line on stderr, exit status 2."""


class UninformativeReference(Exception):
    """The reference model gives (nearly) the same output for every input, so no check can mean anything."""


class EngineUnavailable(Exception):
    """An engine cannot run here (missing package, no GPU); the message says why."""


class StopSweep(Exception):
    """The sweep cannot go on (bad input discovered by a worker, disk full): one line, exit 2; the rows
    already written stay."""
