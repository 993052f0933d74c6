"""The one exception type for bad user input: the CLI prints it on one line and exits with 2."""


class RegrowError(Exception):
    """A problem with what the user asked for (a value, a file, a combination of options)."""


class UnreadableFile(RegrowError):
    """A file regrow reads is missing, binary, not UTF-8, not valid YAML / JSON, or damaged: never a
    reason to carry on with part of the data (e.g. a report that leaves a law out)."""


def reason_of(err: BaseException) -> str:
    """One line saying why a library refused something. transformers' config validators put a
    header first ("Class validation error for validator ...") and the sentence that names the
    values last: the lines that are not such headers, joined."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    useful = [line for line in lines if not line.lower().startswith("class validation error")]
    return " ".join(useful or lines or [type(err).__name__])[:400]
