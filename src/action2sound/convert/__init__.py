"""Foreign checkpoints in and out: the public Action2Sound release and Stable Diffusion v1 (see `release`)."""

from .release import (
    av_from_release,
    av_to_release,
    check_schedule,
    convert,
    export_original,
    from_stable_diffusion,
    ldm_from_release,
    ldm_to_release,
    ldm_schedule,
)
from .safe_load import load_torch_file, state_dict_of
from .tables import Rule, apply_rules

__all__ = [
    "Rule", "apply_rules", "av_from_release", "av_to_release", "check_schedule", "convert", "export_original",
    "from_stable_diffusion", "ldm_from_release", "ldm_schedule", "ldm_to_release", "load_torch_file",
    "state_dict_of",
]
