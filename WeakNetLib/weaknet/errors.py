"""User-facing errors: one clear, actionable line each; the CLI prints them without a traceback."""


class WeakNetError(Exception):
    """Bad input or state a user can fix. ``str(err)`` is the one-line message shown to the user."""


class InputError(WeakNetError):
    """A file, point set or parameter is invalid."""


class GeometryError(InputError):
    """Two volumes (or a volume and a mask) do not share size, spacing, origin and direction."""
