"""Episode dataset on disk (ROS-free): writer, reader. Format: docs/dataset.md."""
from pac_ros.data.format import CODEBASE_VERSION, FORMAT_NAME, FORMAT_VERSION, DatasetError
from pac_ros.data.reader import Dataset, Episode
from pac_ros.data.writer import DatasetWriter, EpisodeBuffer

__all__ = [
    "CODEBASE_VERSION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "Episode",
    "EpisodeBuffer",
]
