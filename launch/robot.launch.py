"""A real robot: the PAC policy (or your teleop) + recorder, next to the robot's own drivers
(ros2_control controllers, cameras, joint_state_broadcaster). No simulator, no /clock.

    ros2 launch pac_ros robot.launch.py checkpoint:=DIR params_file:=FILE
        [driver:=policy|teleop] [use_sim_time:=false] [namespace:=NS]

driver:=teleop starts only the recorder, pairing the stamped commands your teleop (or
scripted controller) publishes on teleop/command. The node list, the default parameter file
(config/robot_nodes.yaml) and what the arguments set come from pac_ros.nodes.graph, which
`pac-ros launch robot` uses too, with the same arguments. docs/bring_your_own_arm.md.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from pac_ros.nodes.graph import node_parameters

GRAPH = "robot"


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
        DeclareLaunchArgument("driver", default_value="policy",
                              description="who commands the robot: policy | teleop (recorder only)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true only when the robot's drivers run on a simulator's /clock"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameter file (default: the package's config/robot_nodes.yaml)"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="the policy's checkpoint (required with driver:=policy unless the "
                                          "parameter file sets it)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the robot's topics and these nodes"),
        OpaqueFunction(function=_nodes),
    ])
