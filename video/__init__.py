"""Own videos to two-stream I3D features: frames (frames.py), flow (flow.py, tvl1.py), the
networks (i3d.py), the extractor that joins them (extractor.py), which videos a run takes
(inputs.py) and its output folder (outputs.py). Training never imports it."""
