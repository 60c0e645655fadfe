"""Input data.

- :mod:`.images`: VGGT's official image preprocessing; :mod:`.folders`: image folders as sequences.
- :mod:`.synthetic` (+ :mod:`.render`, :mod:`.trajectory`): procedural multi-view scenes with
  exact ground truth; :mod:`.scene_io`: scene folders on disk (``docs/scenes.md``).
- :mod:`.calib`: calibration batches from generated scenes, scene folders or photo folders.
"""
