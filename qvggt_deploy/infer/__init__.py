"""Running a deployed model on a folder of photos, whatever the backend.

:mod:`.runners` turns a backend name and model file into a runner (with what the file says
about itself: preset, fixed input size); :mod:`.photos` feeds the photos through it and returns
a :class:`~qvggt_deploy.outputs.reconstruction.Reconstruction` for the writers.
"""
