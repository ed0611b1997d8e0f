"""Action2Sound: ambient-aware generation of action sounds for silent video (AV-LDM)."""

__version__ = "0.1.0"
