"""Own videos to two-stream I3D features: frames (frames.py), flow (flow.py, tvl1.py), the
networks (i3d.py) and the extractor that joins them (extractor.py). Training never imports it."""
