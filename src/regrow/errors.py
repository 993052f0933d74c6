"""The one exception type for bad user input: the CLI prints it on one line and exits with 2."""


from collections.abc import Callable


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


def find_cause(err: BaseException, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception behind `err` (itself, its causes and contexts, and the per-rank
    failures torch's distributed checkpoint wraps as (exception, traceback)) that `wanted` accepts."""
    stack: list = [err]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, tuple) and item:
            item = item[0]
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if wanted(item):
            return item
        seen.add(id(item))
        stack += [item.__cause__, item.__context__, *(getattr(item, "failures", None) or {}).values()]
    return None
