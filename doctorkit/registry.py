"""The shape shared by the kit's registries (methods, data formats, evaluation tasks): a registered unit is any
object (often a module) that states the facts it has; the wrapper answers the optional facts it leaves out from
its kind's DEFAULTS, so every caller can ask every fact. No imports: light command-line modules use it."""
from __future__ import annotations


class Registered:
    """A registered unit with its kind's DEFAULTS filled in for what it leaves out. `name` is its recipe name."""

    DEFAULTS: dict = {}

    def __init__(self, name: str, impl):
        self.name, self.impl = name, impl

    def __getattr__(self, attr):
        if attr == "impl":            # not set yet (copy/pickle): no default for the unit itself
            raise AttributeError(attr)
        try:
            return getattr(self.impl, attr)
        except AttributeError:
            if attr not in self.DEFAULTS:
                raise
            return self.default(attr, self.DEFAULTS[attr])

    def default(self, attr: str, value):
        """The default of a fact the unit leaves out (a kind may bind callables to the unit here)."""
        return value
