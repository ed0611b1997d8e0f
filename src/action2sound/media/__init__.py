"""Media I/O with PyAV: frames at timestamps, audio decode + resample, wav/flac, muxing a track into a video.

The timeline. Every time in this module is in seconds from the first video frame's presentation time
(the video stream's start; for a file without video, the audio stream's), for pictures and sound alike, so
the same number picks the picture and the sound of the same instant and t = 0 is the first frame even in
files whose timestamps start elsewhere (an MPEG-TS starts near 1.4 s; a stream-copied cut may start at
0.03 s). A frame is shown from its presentation timestamp (pts) until the next frame's: the frame at time t
is the last frame whose pts <= t. That rule is right for variable frame rates too, where counting frames is
not.

Encoder priming. An AAC encoder emits 1024 samples of priming before the first real sample. FFmpeg stamps
that packet 1024 samples *before* the first real one (a negative pts when the track starts at 0), and the
mp4 muxer writes an edit list telling players to skip it (FFmpeg drops it on decode), so the first real
sample plays with the first frame. Containers without edit lists (MPEG-TS) keep the priming at its own,
earlier, timestamps. So we give the encoder the first sample at the first frame's pts, never pre-trim by
hand, and place decoded audio on the timeline by each decoded frame's pts, never by counting samples from
the start of the file.
"""

from __future__ import annotations

from .probe import (  # noqa: F401 - the package's public names, one import away
    AUDIO_EXTENSIONS,
    AUDIO_WRITE_EXTENSIONS,
    MUX_MODES,
    MediaInfo,
    RESIZE_MODES,
    ResizeMode,
    VIDEO_EXTENSIONS,
    probe,
    rotate_image,
    rotation_from_display_matrix,
)
from .read import (  # noqa: F401 - the package's public names, one import away
    clip_frame_times,
    read_audio,
    read_audio_file,
    read_frames,
    read_frames_at,
    read_frames_at_sizes,
    resample,
)
from .write import (  # noqa: F401 - the package's public names, one import away
    STAGING_MARK,
    check_finite,
    staging_path,
    video_duration,
    write_audio,
    write_video,
)
from .mux import (  # noqa: F401 - the package's public names, one import away
    MUX_CONTAINERS,
    MuxPlan,
    mux_audio,
    mux_container,
    plan_mux,
)
