"""The built-in fetal echocardiography video simulator: the default data of the benchmark.

anatomy.py draws each subject's thorax and heart per plane level, shapes.py holds the 2D shape
primitives it draws with, render.py turns anatomy maps into ultrasound frames (fan, speckle,
attenuation, shadows, blur), timeline.py schedules a clip (levels, heartbeat, probe motion),
scanners.py defines the simulated machines the downstream images may be spread over, config.py holds the knobs and source.py exposes it all as the `synthetic` data source.
"""
