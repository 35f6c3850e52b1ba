"""Simulated stacking: MuJoCo bridge + a driver (PAC policy or scripted expert) + recorder.

    ros2 launch pac_ros stacking.launch.py [driver:=policy|expert]

The node list and the parameter file come from pac_ros.nodes.graph, which
`pac-ros launch stacking` uses too (for machines without a ROS install).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from pac_ros.nodes.graph import graph


def _nodes(context):
    entries, params, driven = graph("stacking", LaunchConfiguration("driver").perform(context))
    return [
        Node(package="pac_ros", executable=e.executable, name=e.name,
             parameters=[str(params), driven.get(e.name, {})], output="screen")
        for e in entries
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("driver", default_value="policy", description="who commands the robot"),
        OpaqueFunction(function=_nodes),
    ])
