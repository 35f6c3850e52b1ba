"""Simulated stacking: MuJoCo bridge + a driver (PAC policy or scripted expert) + recorder.

    ros2 launch pac_ros stacking.launch.py [driver:=policy|expert] [use_sim_time:=true]
        [params_file:=FILE] [checkpoint:=DIR] [namespace:=NS]

The node list, the default parameter file and what the arguments set come from
pac_ros.nodes.graph, which `pac-ros launch stacking` uses too (for machines without a
ROS install), with the same arguments.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from pac_ros.nodes.graph import node_parameters

GRAPH = "stacking"


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context)
           for name in ("driver", "use_sim_time", "params_file", "checkpoint", "namespace")}
    entries, params, per_node = node_parameters(GRAPH, arg["driver"], arg["use_sim_time"], arg["checkpoint"])
    return [
        Node(package="pac_ros", executable=e.executable, name=e.name, namespace=arg["namespace"],
             parameters=[arg["params_file"] or str(params), per_node.get(e.name, {})], output="screen")
        for e in entries
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("driver", default_value="policy", description="who commands the robot: policy | expert"),
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="run the driver and recorder on the bridge's /clock"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameter file (default: the package's config/stacking.yaml)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="the policy's checkpoint (default: the parameter file's)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace for every node and topic (/clock stays global)"),
        OpaqueFunction(function=_nodes),
    ])
