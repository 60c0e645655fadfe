"""What ``qvggt infer`` writes, whatever backend produced the predictions.

:mod:`.reconstruction` holds one sequence's predictions with the way back to the photos' pixels;
:mod:`.folder` writes the standard folder (cameras.json, depth and confidence .npy/PNG, points.ply);
:mod:`.colmap` a COLMAP text model; :mod:`.glb` a glTF binary scene (points + camera frustums).
"""

#: Extra formats ``qvggt infer --format`` writes beside the standard folder.
FORMATS = ("colmap", "glb")
