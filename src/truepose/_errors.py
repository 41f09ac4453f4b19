"""How TruePose names a library's exception inside the one-line error it raises in its place."""


def describe_error(error: BaseException) -> str:
    """``"TypeName: first line of the message"`` (without a final full stop), or ``"TypeName"`` for no message."""
    message = str(error).strip()
    first_line = message.splitlines()[0].rstrip(".") if message else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
