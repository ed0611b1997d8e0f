"""Action2Sound: ambient-aware generation of action sounds for silent video (AV-LDM)."""

__version__ = "0.1.0"

__all__ = ["Action2Sound", "__version__"]


def __getattr__(name: str):
    # Lazy: `import action2sound` stays light (no torch); the API loads on first use.
    if name == "Action2Sound":
        from .api import Action2Sound

        return Action2Sound
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
