"""The inference stage: ``s2m evaluate`` (metrics, per-case tables, overlays, report), ``s2m predict`` on
images and NIfTI volumes. It builds on the engine's predictor (:mod:`s2mnet.engine.predictor`) and run
folders (:mod:`s2mnet.engine.rundir`); deploy and the command line build on it.
"""
