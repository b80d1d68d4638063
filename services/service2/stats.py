"""A Python procedure: the mean and the maximum of a list of floats."""


def stats(values):
    if not values:
        raise ValueError("stats needs at least one value")
    return sum(values) / len(values), max(values)
