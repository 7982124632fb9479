"""Reading the values people type, the same way in every door (forms, the API, the command line,
the jobs' flags). No Django: the training jobs read their flags with it too."""

YES = frozenset({"1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})


def yes_no(value) -> bool:
    """True or False from a bool or from yes/no, true/false, on/off, 1/0 (any case); ValueError
    for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise ValueError(f"not a yes/no value: {value!r}")
