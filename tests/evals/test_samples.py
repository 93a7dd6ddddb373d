"""The "samples" evaluator (colorjax/evals/samples.py): which eval rows its grid shows."""

import numpy as np

from colorjax.evals import samples


def test_sample_rows_are_spread_over_the_split_and_skip_padding():
  picker = samples.SampleRows(total=10, num=4)  # Rows 0, 3, 6 and 9 of the real images.
  first = picker.take(np.array([True] * 8))
  assert first.tolist() == [0, 3, 6] and not picker.done
  second = picker.take(np.array([False, True, False, True] + [False] * 4))  # Real: 1 and 3.
  assert second.tolist() == [3] and picker.done
