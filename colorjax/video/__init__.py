"""Colorizing videos with temporally stable colours: `colorize_video(colorizer, src, dst)`.

  python -m colorjax.colorize --workdir=runs/lsgan film.mp4 -o colorized/

Per frame, exactly the photo path of `colorjax.inference`: the full-resolution L (CIE Lab) of the
frame is kept untouched, the model predicts ab at its render size from the frame's luminance
(colour videos are colorized from their luminance, like photos), and ab is upsampled and
recombined with the full-resolution L.

Between frames, the predicted ab is smoothed over time with motion compensation, because a model
that colorizes each frame on its own makes colours jump from frame to frame (flicker):

1. Dense optical flow on L, from the current frame back to the previous one (DIS, Kroeger et al.
   2016, "Fast Optical Flow using Dense Inverse Search", OpenCV's implementation), at a reduced
   "work" resolution (long side `work_size`, 256 px by default): ab is low-frequency, so nothing
   is lost there, and the flow costs a few ms per frame. Chosen over Farneback (2003) and
   scikit-image's iterative Lucas-Kanade (`optical_flow_ilk`) by speed and accuracy on the test
   clips: benchmarks/README.md, "Videos", has the measurements.
2. The previous *smoothed* ab is warped into the current frame and blended with the current
   prediction: out = (1 - w) * ab_t + w * warp(out_{t-1}), with w = strength * confidence. The
   confidence is per pixel, the product of
   - photometric agreement: exp(-(L_t - warp(L_{t-1}))^2 / (2 sigma^2)), low where the warp does
     not explain the current frame (occlusions, new content, flow errors);
   - forward-backward consistency of the flow (Sundaram et al. 2010, as used for occlusion masks
     by Ruder et al. 2016): low where the backward flow and the forward flow do not cancel;
   - zero where the warp samples from outside the previous frame.
   This is a recursive (exponential) filter along motion trajectories: on static or well-tracked
   content, strength 0.8 averages over about 5 frames; where the warp fails, the fresh
   prediction is used as it is.
3. Scene cuts reset the filter: a cut is declared when the histograms of L of two consecutive
   frames differ by more than `cut_threshold` in total variation (half the L1 distance of the
   normalised 32-bin histograms; cf. Zhang, Kankanhalli & Smoliar 1993 for histogram
   comparison in cut detection). The per-pixel confidence would also reject most of a cut,
   but the reset makes it exact.

Flicker and fidelity are measured with `FlickerMeter`: the warping error of Lai et al. 2018
("Learning Blind Video Temporal Consistency"), mean ab difference between each output frame and
the previous output frame warped by flow computed on the *original* frames, over non-occluded
pixels; PSNR and colourfulness (Hasler & Suesstrunk 2003) against the original colour frames.

Input and output (PyAV, the FFmpeg binding):
- Any container/codec FFmpeg reads. The output uses the input's container (by the destination's
  extension) with H.264 (libx264, CRF 18) or VP9 for .webm, at the input's frame size, frame
  rate, frame count and timestamps (pts copied, so variable frame rate is kept). Audio streams
  are copied packet by packet, not re-encoded.
- Odd frame sizes: 4:2:0 chroma needs even sides, so such frames are encoded 4:4:4 (yuv444p;
  H.264 High 4:4:4 Predictive), which keeps the exact size; some players (browsers) do not play
  4:4:4 H.264. Even sizes use yuv420p, which plays everywhere.
- Colour tags (matrix, range, primaries, transfer) are copied, and RGB is encoded with the
  input's matrix and range, e.g. BT.709 for HD; untagged inputs stay untagged (BT.601).
- Rotation metadata (display matrix) is kept: frames are turned upright for the model (it was
  trained on upright photos), turned back, and the output carries the input's rotation, so it
  displays exactly like the input.
- A truncated or damaged file: every frame that decodes is written, undecodable packets are
  skipped, and `VideoResult.stopped_early` (printed by the CLI) says where decoding stopped.
- The output is written under a temporary name next to the destination and renamed at the
  end, so a partial file never sits under the final name.
Memory does not grow with the video's length: frames stream through in batches.

Modules: `io` (PyAV reading and writing), `flow` (optical flow and warping), `smoothing` (the
temporal filter), `flicker` (the measure), `colorizing` (`colorize_video`, the model's part).
"""

from colorjax.video.colorizing import colorize_video
from colorjax.video.colorizing import DEFAULT_WORK_SIZE
from colorjax.video.colorizing import is_video
from colorjax.video.colorizing import run_jobs
from colorjax.video.colorizing import VIDEO_EXTENSIONS
from colorjax.video.colorizing import VideoResult
from colorjax.video.colorizing import work_shape_for
from colorjax.video.flicker import FlickerMeter
from colorjax.video.flow import DenseFlow
from colorjax.video.flow import warp
from colorjax.video.smoothing import DEFAULT_CUT_THRESHOLD
from colorjax.video.smoothing import DEFAULT_STRENGTH
from colorjax.video.smoothing import TemporalSmoother
