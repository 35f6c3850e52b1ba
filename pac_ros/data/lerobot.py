"""LeRobotDataset interchange: export to v3.0, import from v2.x or v3.x (docs/dataset.md).

Export (lerobot_export.py) writes camera images as image features (our PNG bytes) or
lossless MP4 video features; import (lerobot_import.py) reads either, decoding video with
PyAV (lerobot_video.py). The layout both follow is in lerobot_layout.py. No lerobot or
pandas needed.
"""
from pac_ros.data.lerobot_export import export_lerobot, v3_features
from pac_ros.data.lerobot_import import import_lerobot

__all__ = ["export_lerobot", "import_lerobot", "v3_features"]
