"""Errors the pipeline raises on purpose. Tasks retry none of these: they are bad config or bad data, not weather."""


class PipelineError(Exception):
    """Base class: a problem the user must fix; the message says what and where."""


class ConfigError(PipelineError, ValueError):
    """The configuration is invalid; the message names the dotted field."""


class InputDataError(PipelineError, ValueError):
    """An input file or column is missing or malformed; the message names the file and the problem."""


def line_or_row(row: int, line: int | None, unit: str = "row") -> str:
    """Where a row of a source file is, for a message: 'line 14' where the line it starts on is known (a quoted
    value spans lines and a jsonl file may hold blank lines, so a row's number is not its line's), else 'row 3'
    (`row` is 0-based, said 1-based; unit 'record' for a JSON array's elements)."""
    return f"line {line}" if line is not None else f"{unit} {row + 1}"


class RowError(InputDataError):
    """A value of one row of a source is malformed: `row` is its 0-based index in the file's rows, so that the reader,
    which knows the line each row starts on, can name the line; str() says 'row N: problem' (1-based)."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(f"{line_or_row(row, None)}: {problem}")
        self.row, self.problem = row, problem

    def at(self, lines: list[int] | None) -> str:
        """'line 14: problem' where the rows' lines are known, else 'row 3: problem'."""
        return f"{line_or_row(self.row, lines[self.row] if lines else None)}: {self.problem}"


class LakeStateError(PipelineError, RuntimeError):
    """A stage found the lake in a state it cannot continue from (e.g. an earlier stage has not run)."""


# Errors that say "the thing is not there / not allowed": retrying cannot help.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure: network, timeouts, throttling or 5xx from an object store.

    Bad config, bad data and missing files are permanent: retrying them only delays the message the user needs.
    """
    if isinstance(exc, PipelineError) or isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError):  # s3fs/aiohttp map network and 5xx failures to OSError subclasses
        return True
    name = type(exc).__name__
    return name in {"ClientError", "ServerDisconnectedError", "ReadTimeoutError", "EndpointConnectionError",
                    "ConnectTimeoutError", "SlowDown", "ServiceUnavailable", "InternalError"}
