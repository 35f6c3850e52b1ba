"""rosbag2/MCAP interchange: export dataset episodes as a bag on the live robot's topics,
import such a recording (ours or ``ros2 bag record``'s) into a dataset (docs/dataset.md).

Export is in mcap_export.py, import in mcap_import.py, the import's checks of an untrusted
bag in mcap_check.py; the message types, their registration and what the exporter records
in a bag are in mcap_layout.py. ROS-free.
"""
from pac_ros.data.mcap_export import BLOCK_FRAME, DEFAULT_COMMANDER, EPISODE_GAP_S, export_mcap
from pac_ros.data.mcap_import import import_mcap
from pac_ros.data.mcap_layout import (
    CUSTOM_DATA_KEY,
    PACKAGE_MSG,
    TYPESTORE,
    describe_bag,
    make_typestore,
    package_msg_files,
    read_mcap_topics,
)

__all__ = ["BLOCK_FRAME", "CUSTOM_DATA_KEY", "DEFAULT_COMMANDER", "EPISODE_GAP_S", "PACKAGE_MSG", "TYPESTORE",
           "describe_bag", "export_mcap", "import_mcap", "make_typestore", "package_msg_files", "read_mcap_topics"]
